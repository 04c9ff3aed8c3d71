#include "config/toml_reader.h"

#include <algorithm>

#include <fmt/format.h>

#include "config/values.h"

namespace blkvault::config {
namespace {

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

}  // namespace

std::string join_key(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return fmt::format("{}.{}", path, key);
}

void TomlReader::problem(const toml::source_region& at, std::string key, std::string message) {
  problems_.push_back(Problem{file_, static_cast<uint32_t>(at.begin.line), static_cast<uint32_t>(at.begin.column),
                              std::move(key), std::move(message)});
}

bool TomlReader::check_keys(const toml::table& table, std::string_view path, std::span<const std::string_view> known) {
  bool all_known = true;
  for (auto&& [key, value] : table) {
    std::string_view name = key.str();
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    std::string message = fmt::format("unknown key '{}'", name);
    if (std::string near = closest_match(name, known); !near.empty()) {
      message += fmt::format(" (did you mean '{}'?)", near);
    }
    problem(key.source(), join_key(path, name), std::move(message));
    all_known = false;
  }
  return all_known;
}

bool TomlReader::require(const toml::table& table, std::string_view path, std::string_view key) {
  if (table.contains(key)) return true;
  problem(table.source(), join_key(path, key), "required key is missing");
  return false;
}

const toml::node* TomlReader::typed(const toml::table& t, std::string_view path, std::string_view key,
                                    toml::node_type want, std::string_view want_name) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return nullptr;
  if (node->type() != want) {
    problem(node->source(), join_key(path, key), fmt::format("expected {}, got {}", want_name, type_name(node->type())));
    return nullptr;
  }
  return node;
}

const toml::table* TomlReader::table(const toml::table& parent, std::string_view path, std::string_view key) {
  const toml::node* node = typed(parent, path, key, toml::node_type::table, "a table");
  return node ? node->as_table() : nullptr;
}

std::optional<std::string> TomlReader::string(const toml::table& t, std::string_view path, std::string_view key) {
  const toml::node* node = typed(t, path, key, toml::node_type::string, "a string");
  if (node == nullptr) return std::nullopt;
  std::string value = node->as_string()->get();
  if (value.empty()) {
    problem(node->source(), join_key(path, key), "must not be empty");
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> TomlReader::path(const toml::table& t, std::string_view path, std::string_view key) {
  auto value = string(t, path, key);
  if (value && (*value)[0] != '/') {
    problem(t.get(key)->source(), join_key(path, key), fmt::format("'{}' is not an absolute path", *value));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> TomlReader::boolean(const toml::table& t, std::string_view path, std::string_view key) {
  const toml::node* node = typed(t, path, key, toml::node_type::boolean, "a boolean (true or false)");
  if (node == nullptr) return std::nullopt;
  return node->as_boolean()->get();
}

std::optional<int64_t> TomlReader::integer(const toml::table& t, std::string_view path, std::string_view key,
                                           int64_t min, int64_t max) {
  const toml::node* node = typed(t, path, key, toml::node_type::integer, "an integer");
  if (node == nullptr) return std::nullopt;
  int64_t v = node->as_integer()->get();
  if (v < min || v > max) {
    problem(node->source(), join_key(path, key), fmt::format("{} is out of range {}-{}", v, min, max));
    return std::nullopt;
  }
  return v;
}

std::optional<double> TomlReader::percent(const toml::table& t, std::string_view path, std::string_view key) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return std::nullopt;
  double v = 0;
  if (const auto* i = node->as_integer()) {
    v = static_cast<double>(i->get());
  } else if (const auto* f = node->as_floating_point()) {
    v = f->get();
  } else {
    problem(node->source(), join_key(path, key), "expected a number (a percentage from 0 to 100)");
    return std::nullopt;
  }
  if (!(v >= 0 && v <= 100)) {
    problem(node->source(), join_key(path, key), fmt::format("{} is not a percentage from 0 to 100", v));
    return std::nullopt;
  }
  return v;
}

std::optional<uint64_t> TomlReader::size(const toml::table& t, std::string_view path, std::string_view key) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* i = node->as_integer()) {
    if (i->get() >= 0) return static_cast<uint64_t>(i->get());
    problem(node->source(), join_key(path, key), fmt::format("size {} is negative", i->get()));
    return std::nullopt;
  }
  if (const auto* s = node->as_string()) {
    auto bytes = parse_size(s->get());
    if (bytes) return *bytes;
    problem(node->source(), join_key(path, key), bytes.error().message());
    return std::nullopt;
  }
  problem(node->source(), join_key(path, key),
          fmt::format("expected a size such as \"512M\" or \"4G\", got {}", type_name(node->type())));
  return std::nullopt;
}

std::optional<uint64_t> TomlReader::duration(const toml::table& t, std::string_view path, std::string_view key) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* i = node->as_integer()) {
    if (i->get() >= 0) return static_cast<uint64_t>(i->get());
    problem(node->source(), join_key(path, key), fmt::format("duration {} is negative", i->get()));
    return std::nullopt;
  }
  if (const auto* s = node->as_string()) {
    auto seconds = parse_duration(s->get());
    if (seconds) return *seconds;
    problem(node->source(), join_key(path, key), seconds.error().message());
    return std::nullopt;
  }
  problem(node->source(), join_key(path, key),
          fmt::format("expected a duration such as \"30s\" or \"5m\", or seconds, got {}", type_name(node->type())));
  return std::nullopt;
}

std::optional<Command> TomlReader::command(const toml::table& t, std::string_view path, std::string_view key) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return std::nullopt;
  std::string full = join_key(path, key);
  Command cmd;
  if (const auto* s = node->as_string()) {
    if (s->get().find_first_not_of(" \t") == std::string::npos) {
      problem(node->source(), full, "the command is empty");
      return std::nullopt;
    }
    cmd.shell = s->get();
    return cmd;
  }
  const auto* arr = node->as_array();
  if (arr == nullptr) {
    problem(node->source(), full,
            fmt::format("expected a command: a string for /bin/sh or an array of strings, got {}",
                        type_name(node->type())));
    return std::nullopt;
  }
  if (arr->empty()) {
    problem(node->source(), full, "the command is empty");
    return std::nullopt;
  }
  bool ok = true;
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& element = *arr->get(i);
    std::string element_key = fmt::format("{}[{}]", full, i);
    if (!element.is_string()) {
      problem(element.source(), element_key, fmt::format("expected a string, got {}", type_name(element.type())));
      ok = false;
    } else if (i == 0 && element.as_string()->get().empty()) {
      problem(element.source(), element_key, "the program name is empty");
      ok = false;
    } else {
      cmd.argv.push_back(element.as_string()->get());
    }
  }
  if (!ok) return std::nullopt;
  return cmd;
}

std::vector<Problem> TomlReader::take_problems() {
  std::stable_sort(problems_.begin(), problems_.end(), [](const Problem& a, const Problem& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  return std::move(problems_);
}

}  // namespace blkvault::config
