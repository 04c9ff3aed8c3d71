// config/toml_reader.h — internal to config/: typed reads from a parsed toml++
// document that record a Problem (with the source position) for every value
// that is missing, of the wrong type or out of range, instead of stopping at
// the first one.
//
// Every getter returns std::nullopt both when the key is absent (no problem
// recorded) and when it is wrong (problem recorded); callers keep their
// default in either case, so checking continues and reports everything.
// Key paths are dotted: "job.db.hooks.timeout".
//
// Not thread-safe (it accumulates problems); use one per document.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "config/job_config.h"

namespace blkvault::config {

std::string join_key(std::string_view path, std::string_view key);

class TomlReader {
 public:
  explicit TomlReader(std::string file) : file_(std::move(file)) {}

  void problem(const toml::source_region& at, std::string key, std::string message);

  // Records "unknown key" for every key of `table` not in `known`, suggesting
  // the closest known key. Returns false when there was one.
  bool check_keys(const toml::table& table, std::string_view path, std::span<const std::string_view> known);
  // Records "required key is missing" at the table's position when `key` is absent.
  bool require(const toml::table& table, std::string_view path, std::string_view key);

  const toml::table* table(const toml::table& parent, std::string_view path, std::string_view key);
  std::optional<std::string> string(const toml::table& t, std::string_view path, std::string_view key);
  // A string that must be an absolute path.
  std::optional<std::string> path(const toml::table& t, std::string_view path, std::string_view key);
  std::optional<bool> boolean(const toml::table& t, std::string_view path, std::string_view key);
  std::optional<int64_t> integer(const toml::table& t, std::string_view path, std::string_view key, int64_t min,
                                 int64_t max);
  // A percentage: an integer or float from 0 to 100.
  std::optional<double> percent(const toml::table& t, std::string_view path, std::string_view key);
  // A size: a string with a unit ("512M") or an integer number of bytes.
  std::optional<uint64_t> size(const toml::table& t, std::string_view path, std::string_view key);
  // A duration: a string with units ("5m", "1h30m") or an integer number of seconds.
  std::optional<uint64_t> duration(const toml::table& t, std::string_view path, std::string_view key);
  // A command: a non-empty string (shell) or a non-empty array of strings (argv).
  std::optional<Command> command(const toml::table& t, std::string_view path, std::string_view key);

  std::vector<Problem> take_problems();

 private:
  // The node at `key`, or nullptr; records a type problem when it is present
  // but not of type `want` (named `want_name`).
  const toml::node* typed(const toml::table& t, std::string_view path, std::string_view key, toml::node_type want,
                          std::string_view want_name);

  std::string file_;
  std::vector<Problem> problems_;
};

}  // namespace blkvault::config
