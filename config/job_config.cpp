#include "config/job_config.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/file_io.h"
#include "common/s3_credentials.h"
#include "config/toml_reader.h"
#include "config/values.h"

namespace blkvault::config {
namespace {

constexpr std::string_view kRootKeys[] = {"module", "state-dir", "lock-wait", "cbt-audit", "repository",
                                          "diff-storage", "report", "metrics", "limits", "job"};
constexpr std::string_view kRepositoryKeys[] = {"path", "chunk-size", "compression", "pack-size", "password-file",
                                                "key-file", "credentials-file"};
constexpr std::string_view kDiffStorageKeys[] = {"dir", "device", "size", "limit"};
constexpr std::string_view kReportKeys[] = {"log-file", "syslog", "on-failure", "on-success"};
constexpr std::string_view kMetricsKeys[] = {"textfile-dir"};
constexpr std::string_view kJobKeys[] = {"devices", "schedule", "retention", "hooks",
                                         "module",  "diff-storage", "report", "lock-wait", "limits", "cbt-audit"};
constexpr std::string_view kLimitsKeys[] = {"read", "upload", "psi-file"};
constexpr std::string_view kKeepKeys[] = {"keep-last", "keep-hourly", "keep-daily",
                                          "keep-weekly", "keep-monthly", "keep-yearly"};
constexpr std::string_view kRetentionKeys[] = {"keep-last",    "keep-hourly", "keep-daily", "keep-weekly",
                                               "keep-monthly", "keep-yearly", "gc"};
constexpr std::string_view kHookKeys[] = {"pre", "post-snapshot", "post", "timeout"};

constexpr uint64_t kMinChunk = 64ull << 10;
constexpr uint64_t kMaxChunk = 16ull << 20;
constexpr uint64_t kMaxPack = 4ull << 30;
constexpr size_t kMaxJobName = 64;

void read_repository(TomlReader& r, const toml::table& root, RepositoryConfig* out) {
  if (!root.contains("repository")) {
    r.problem(root.source(), "repository", "required table is missing");
    return;
  }
  const toml::table* t = r.table(root, "", "repository");
  if (t == nullptr) return;
  const std::string_view p = "repository";
  r.check_keys(*t, p, kRepositoryKeys);
  if (r.require(*t, p, "path")) {
    // An absolute directory, or object storage: "s3:https://HOST[:PORT]/BUCKET[/PREFIX]"
    // (the address is checked in full when the repository is opened).
    const toml::node* n = t->get("path");
    const auto* s = n->as_string();
    if (s != nullptr && s->get().rfind("s3:", 0) == 0) {
      const std::string& v = s->get();
      if (v.rfind("s3:https://", 0) != 0 && v.rfind("s3:http://", 0) != 0) {
        r.problem(n->source(), "repository.path",
                  fmt::format("'{}' is not s3:https://HOST[:PORT]/BUCKET[/PREFIX]", v));
      } else {
        out->path = v;
      }
    } else if (auto v = r.path(*t, p, "path")) {
      out->path = *v;
    }
  }
  if (auto v = r.size(*t, p, "chunk-size")) {
    if (*v < kMinChunk || *v > kMaxChunk || (*v & (*v - 1)) != 0) {
      r.problem(t->get("chunk-size")->source(), "repository.chunk-size",
                fmt::format("{} is not a power of two from 64K to 16M", format_size(*v)));
    } else {
      out->chunk_size_bytes = *v;
    }
  }
  if (auto v = r.integer(*t, p, "compression", 1, 19)) out->compression_level = static_cast<int>(*v);
  if (auto v = r.path(*t, p, "password-file")) out->password_file = *v;
  if (auto v = r.path(*t, p, "key-file")) out->key_file = *v;
  if (auto v = r.path(*t, p, "credentials-file")) {
    const auto where = t->get("credentials-file")->source();
    if (!out->path.empty() && out->path.rfind("s3:", 0) != 0) {
      r.problem(where, "repository.credentials-file", "is only for an s3: repository (path is a directory)");
    } else if (auto c = read_s3_credentials_file(*v); !c) {
      r.problem(where, "repository.credentials-file", c.error().message());
    } else {
      out->credentials_file = *v;
    }
  }
  if (auto v = r.size(*t, p, "pack-size")) {
    if (*v < out->chunk_size_bytes || *v > kMaxPack) {
      r.problem(t->get("pack-size")->source(), "repository.pack-size",
                fmt::format("{} is not from the chunk size ({}) to 4G", format_size(*v),
                            format_size(out->chunk_size_bytes)));
    } else {
      out->pack_size_bytes = *v;
    }
  }
}

// "/dev/veeamblksnap" (or another absolute path) or "sim:/DIR".
std::optional<std::string> read_module(TomlReader& r, const toml::table& t, std::string_view path) {
  auto v = r.string(t, path, "module");
  if (!v) return std::nullopt;
  bool sim = v->rfind("sim:", 0) == 0;
  std::string_view where = sim ? std::string_view(*v).substr(4) : std::string_view(*v);
  if (where.empty() || where[0] != '/') {
    r.problem(t.get("module")->source(), join_key(path, "module"),
              fmt::format("'{}' is neither an absolute device path such as '{}' nor 'sim:DIR' with an absolute DIR",
                          *v, kDefaultModule));
    return std::nullopt;
  }
  return v;
}

// Sets the keys the table gives, keeping `*inout` for the others.
void read_diff_storage(TomlReader& r, const toml::table& t, std::string_view path, DiffStorageConfig* inout) {
  r.check_keys(t, path, kDiffStorageKeys);
  if (t.contains("dir") && t.contains("device")) {
    r.problem(t.get("device")->source(), join_key(path, "device"),
              "give either dir (storage files) or device (a whole block device), not both");
  }
  // A table's dir or device replaces the inherited choice of the other.
  if (auto v = r.path(t, path, "dir")) {
    inout->dir = *v;
    inout->device.clear();
  }
  if (auto v = r.path(t, path, "device")) inout->device = *v;
  auto size = r.size(t, path, "size");
  auto limit = r.size(t, path, "limit");
  if (size) inout->size_bytes = *size;
  if (limit) inout->limit_bytes = *limit;
  // Compared only when what the table gives is valid, so one mistake is one problem.
  bool given_valid = (size || !t.contains("size")) && (limit || !t.contains("limit"));
  if ((size || limit) && given_valid && inout->limit_bytes < inout->size_bytes) {
    const toml::node* at = t.get("limit") ? t.get("limit") : t.get("size");
    r.problem(at ? at->source() : t.source(), join_key(path, t.get("limit") ? "limit" : "size"),
              fmt::format("the limit ({}) is smaller than the initial size ({})", format_size(inout->limit_bytes),
                          format_size(inout->size_bytes)));
  }
}

// Sets the keys the table gives, keeping `*inout` for the others.
void read_report(TomlReader& r, const toml::table& t, std::string_view path, ReportConfig* inout) {
  r.check_keys(t, path, kReportKeys);
  if (auto v = r.path(t, path, "log-file")) inout->log_file = *v;
  if (auto v = r.boolean(t, path, "syslog")) inout->syslog = *v;
  if (auto v = r.command(t, path, "on-failure")) inout->on_failure = *v;
  if (auto v = r.command(t, path, "on-success")) inout->on_success = *v;
}

// A rate as a TOML number (20, 2.5) or string ("auto:200"), as its text;
// nullopt (problem recorded) when it is neither or does not parse.
std::optional<std::string> read_rate(TomlReader& r, const toml::table& t, std::string_view path, std::string_view key,
                                     bool read_limit) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return std::nullopt;
  std::string text;
  if (const auto* i = n->as_integer()) {
    text = std::to_string(i->get());
  } else if (const auto* f = n->as_floating_point()) {
    text = fmt::format("{}", f->get());
  } else if (const auto* s = n->as_string()) {
    text = s->get();
  } else {
    r.problem(n->source(), join_key(path, key),
              read_limit ? "expected a number of MB/s, \"auto\" or \"auto:MAX\"" : "expected a number of MB/s");
    return std::nullopt;
  }
  auto ok = read_limit ? parse_read_limit(text).map([](auto) { return 0; })
                       : parse_rate(text).map([](auto) { return 0; });
  if (!ok) {
    r.problem(n->source(), join_key(path, key), ok.error().message());
    return std::nullopt;
  }
  return text;
}

// Sets the keys the table gives, keeping `*inout` for the others.
void read_limits(TomlReader& r, const toml::table& t, std::string_view path, LimitsConfig* inout) {
  r.check_keys(t, path, kLimitsKeys);
  if (auto v = read_rate(r, t, path, "read", /*read_limit=*/true)) inout->read = *v;
  if (auto v = read_rate(r, t, path, "upload", /*read_limit=*/false)) inout->upload = *v;
  if (auto v = r.path(t, path, "psi-file")) inout->psi_file = *v;
}

std::optional<RetentionConfig> read_retention(TomlReader& r, const toml::table& t, std::string_view path) {
  // A misspelt rule is reported as such, not also as "no rule is on".
  bool all_known = r.check_keys(t, path, kRetentionKeys);
  RetentionConfig out;
  uint32_t* fields[] = {&out.keep_last,   &out.keep_hourly,  &out.keep_daily,
                        &out.keep_weekly, &out.keep_monthly, &out.keep_yearly};
  bool any_on = false, any_bad = !all_known;
  for (size_t i = 0; i < std::size(kKeepKeys); ++i) {
    if (!t.contains(kKeepKeys[i])) continue;
    auto v = r.integer(t, path, kKeepKeys[i], 0, INT32_MAX);
    if (!v) {
      any_bad = true;
      continue;
    }
    *fields[i] = static_cast<uint32_t>(*v);
    any_on = any_on || *v > 0;
  }
  if (t.contains("gc")) {
    if (auto v = r.boolean(t, path, "gc")) {
      out.gc = *v;
    } else {
      any_bad = true;
    }
  }
  if (any_bad) return std::nullopt;
  if (!any_on) {
    r.problem(t.source(), std::string(path),
              "no keep rule is above 0, so prune would keep only each device's last good backup (leave the table "
              "out to never prune)");
    return std::nullopt;
  }
  return out;
}

HooksConfig read_hooks(TomlReader& r, const toml::table& t, std::string_view path) {
  r.check_keys(t, path, kHookKeys);
  HooksConfig out;
  if (auto v = r.command(t, path, "pre")) out.pre = *v;
  if (auto v = r.command(t, path, "post-snapshot")) out.post_snapshot = *v;
  if (auto v = r.command(t, path, "post")) out.post = *v;
  if (auto v = r.duration(t, path, "timeout")) {
    if (*v == 0) {
      r.problem(t.get("timeout")->source(), join_key(path, "timeout"), "must be more than 0 seconds");
    } else {
      out.timeout_s = *v;
    }
  }
  return out;
}

std::vector<std::string> read_devices(TomlReader& r, const toml::table& t, std::string_view path) {
  std::vector<std::string> out;
  if (!r.require(t, path, "devices")) return out;
  const toml::node* node = t.get("devices");
  std::string key = join_key(path, "devices");
  const toml::array* arr = node->as_array();
  if (arr == nullptr) {
    r.problem(node->source(), key, "expected an array of device paths, such as [\"/dev/sda\"]");
    return out;
  }
  if (arr->empty()) r.problem(node->source(), key, "the job has no devices");
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& e = *arr->get(i);
    std::string element_key = fmt::format("{}[{}]", key, i);
    const auto* s = e.as_string();
    if (s == nullptr) {
      r.problem(e.source(), element_key, "expected a device path (a string)");
    } else if (s->get().empty() || s->get()[0] != '/') {
      r.problem(e.source(), element_key, fmt::format("'{}' is not an absolute path", s->get()));
    } else if (std::find(out.begin(), out.end(), s->get()) != out.end()) {
      r.problem(e.source(), element_key, fmt::format("'{}' is listed twice", s->get()));
    } else {
      out.push_back(s->get());
    }
  }
  return out;
}

bool valid_job_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxJobName) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

JobConfig read_job(TomlReader& r, const toml::table& t, const std::string& name, const Config& global) {
  const std::string path = join_key("job", name);
  r.check_keys(t, path, kJobKeys);
  JobConfig job;
  job.name = name;
  job.module_spec = global.module_spec;
  job.diff_storage = global.diff_storage;
  job.report = global.report;
  job.lock_wait_s = global.lock_wait_s;
  job.limits = global.limits;
  job.cbt_audit_percent = global.cbt_audit_percent;
  job.devices = read_devices(r, t, path);
  if (auto text = r.string(t, path, "schedule")) {
    auto s = parse_schedule(*text);
    if (s) {
      job.schedule = std::move(*s);
    } else {
      r.problem(t.get("schedule")->source(), join_key(path, "schedule"), s.error().message());
    }
  }
  if (const toml::table* sub = r.table(t, path, "retention")) job.retention = read_retention(r, *sub, path + ".retention");
  if (const toml::table* sub = r.table(t, path, "hooks")) job.hooks = read_hooks(r, *sub, path + ".hooks");
  if (auto v = read_module(r, t, path)) job.module_spec = *v;
  if (const toml::table* sub = r.table(t, path, "diff-storage")) {
    read_diff_storage(r, *sub, path + ".diff-storage", &job.diff_storage);
  }
  if (const toml::table* sub = r.table(t, path, "report")) read_report(r, *sub, path + ".report", &job.report);
  if (auto v = r.duration(t, path, "lock-wait")) job.lock_wait_s = *v;
  if (const toml::table* sub = r.table(t, path, "limits")) read_limits(r, *sub, path + ".limits", &job.limits);
  if (auto v = r.percent(t, path, "cbt-audit")) job.cbt_audit_percent = *v;
  return job;
}

void read_jobs(TomlReader& r, const toml::table& root, Config* config) {
  const toml::table* jobs = r.table(root, "", "job");
  if (jobs == nullptr) return;
  // toml++ keeps keys sorted; jobs are listed in the order of the file.
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (auto&& [key, node] : *jobs) entries.emplace_back(&key, &node);
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    const auto& x = a.first->source().begin;
    const auto& y = b.first->source().begin;
    return x.line != y.line ? x.line < y.line : x.column < y.column;
  });
  for (const auto& [key, node] : entries) {
    std::string name(key->str());
    std::string path = join_key("job", name);
    if (!valid_job_name(name)) {
      r.problem(key->source(), path,
                fmt::format("job name '{}' may only have letters, digits, '-' and '_' (at most {}): it names "
                            "systemd units and cron files",
                            name, kMaxJobName));
    }
    const toml::table* t = node->as_table();
    if (t == nullptr) {
      r.problem(node->source(), path, "expected a table ([job.NAME]) describing the job");
      continue;
    }
    config->jobs.push_back(read_job(r, *t, name, *config));
  }
}

void read_root(TomlReader& r, const toml::table& root, Config* config) {
  r.check_keys(root, "", kRootKeys);
  read_repository(r, root, &config->repository);
  if (auto v = read_module(r, root, "")) config->module_spec = *v;
  if (auto v = r.path(root, "", "state-dir")) {
    config->state_dir = *v;
  } else if (config->module_spec.rfind("sim:", 0) == 0) {
    config->state_dir = config->module_spec.substr(4) + "/client";
  } else {
    config->state_dir = kDefaultStateDir;
  }
  if (auto v = r.duration(root, "", "lock-wait")) config->lock_wait_s = *v;
  if (auto v = r.percent(root, "", "cbt-audit")) config->cbt_audit_percent = *v;
  config->diff_storage.dir = config->state_dir + "/diff";
  if (const toml::table* t = r.table(root, "", "diff-storage")) {
    read_diff_storage(r, *t, "diff-storage", &config->diff_storage);
  }
  if (const toml::table* t = r.table(root, "", "report")) read_report(r, *t, "report", &config->report);
  if (const toml::table* t = r.table(root, "", "metrics")) {
    r.check_keys(*t, "metrics", kMetricsKeys);
    if (auto v = r.path(*t, "metrics", "textfile-dir")) config->metrics.textfile_dir = *v;
  }
  if (const toml::table* t = r.table(root, "", "limits")) read_limits(r, *t, "limits", &config->limits);
  read_jobs(r, root, config);
}

}  // namespace

const JobConfig* Config::find_job(std::string_view name) const {
  for (const auto& job : jobs) {
    if (job.name == name) return &job;
  }
  return nullptr;
}

std::string to_string(const Problem& p) {
  std::string where = p.line > 0 ? fmt::format("{}:{}:{}", p.file, p.line, p.column) : p.file;
  if (p.key.empty()) return fmt::format("{}: {}", where, p.message);
  return fmt::format("{}: {}: {}", where, p.key, p.message);
}

CheckResult check_text(std::string_view text, std::string_view file) {
  CheckResult result;
  result.config.file = std::string(file);
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(file));
  } catch (const toml::parse_error& e) {
    result.problems.push_back(Problem{std::string(file), static_cast<uint32_t>(e.source().begin.line),
                                      static_cast<uint32_t>(e.source().begin.column), "",
                                      std::string(e.description())});
    return result;
  }
  TomlReader reader{std::string(file)};
  read_root(reader, root, &result.config);
  result.problems = reader.take_problems();
  return result;
}

Result<CheckResult> check_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return fail(std::move(text).error().wrap("reading config"));
  return check_text(*text, path);
}

Result<Config> load_file(const std::string& path) {
  BLKVAULT_TRY_ASSIGN(CheckResult checked, check_file(path));
  if (!checked.ok()) {
    size_t n = checked.problems.size();
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("config {}: {} problem{}, the first: {}; run 'blkvault config check --config {}'", path, n,
                            n == 1 ? "" : "s", to_string(checked.problems.front()), path));
  }
  return std::move(checked.config);
}

}  // namespace blkvault::config
