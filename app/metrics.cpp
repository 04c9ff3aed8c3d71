#include "app/metrics.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "common/file_io.h"

namespace blkvault::app {
namespace {

using enum MetricType;

// The help texts are one line each; docs/METRICS.md says more.
constexpr MetricDef kMetrics[] = {
    {"blkvault_last_run_timestamp_seconds", kGauge,
     "When the job's last run ended, whatever its outcome (Unix time; skipped runs are not counted)."},
    {"blkvault_last_run_duration_seconds", kGauge, "How long the job's last run took."},
    {"blkvault_last_run_success", kGauge, "1 when the job's last run succeeded, 0 when it failed."},
    {"blkvault_last_run_exit_status", kGauge, "The exit status of the job's last run (0 success)."},
    {"blkvault_runs_total", kCounter, "Runs of the job by outcome (success, failure)."},
    {"blkvault_last_success_timestamp_seconds", kGauge, "When the job's last successful run ended (Unix time)."},
    {"blkvault_last_success_duration_seconds", kGauge, "How long the job's last successful run took."},
    {"blkvault_last_success_generation", kGauge, "The generation committed by the job's last successful run."},
    {"blkvault_device_last_success_timestamp_seconds", kGauge,
     "When the last generation holding a complete backup of the device was committed (Unix time)."},
    {"blkvault_device_last_success_duration_seconds", kGauge,
     "How long reading and storing the device took in its last committed backup."},
    {"blkvault_device_size_bytes", kGauge, "The device's size at its last committed backup."},
    {"blkvault_device_changed_bytes", kGauge,
     "What the change tracking marked changed at the device's last committed backup (its size for a full read)."},
    {"blkvault_device_read_bytes", kGauge, "Bytes read from the snapshot at the device's last committed backup."},
    {"blkvault_device_new_bytes", kGauge,
     "Of those, bytes of chunks not already in the repository (after deduplication)."},
    {"blkvault_device_stored_bytes", kGauge, "What the new chunks of the device's last committed backup take in packs."},
    {"blkvault_device_full_read", kGauge,
     "1 when the device's last committed backup read it whole (label reason), 0 (reason \"\") when incremental."},
    {"blkvault_device_cbt_resets_total", kCounter,
     "Committed backups of the device that found its CBT generation changed (tracking reset), so read it whole."},
    {"blkvault_snapshot_overflows_total", kCounter,
     "Snapshot corruption events of the device (difference storage overflow or I/O error); each failed its backup."},
    {"blkvault_repository_size_bytes", kGauge, "Bytes in the repository's packs, as of the job's last run."},
    {"blkvault_repository_packs", kGauge, "Pack files in the repository, as of the job's last run."},
    {"blkvault_repository_chunks", kGauge, "Unique chunks in the repository, as of the job's last run."},
    {"blkvault_repository_generations", kGauge,
     "Generations in the repository by state (committed, failed), as of the job's last run."},
    {"blkvault_verify_last_timestamp_seconds", kGauge, "When the last verify of the repository ended (Unix time)."},
    {"blkvault_verify_last_duration_seconds", kGauge, "How long the last verify of the repository took."},
    {"blkvault_verify_damaged_chunks", kGauge, "Damaged chunks the last verify of the repository found."},
    {"blkvault_verify_problems", kGauge, "Other problems (index, manifests, packs) the last verify found."},
};

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

// One sample line: name{k="v",...} value. False when it does not parse.
bool parse_sample(std::string_view line, std::string* name, Labels* labels, double* value) {
  size_t i = 0;
  while (i < line.size() && name_char(line[i], i == 0)) ++i;
  if (i == 0) return false;
  *name = std::string(line.substr(0, i));
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      size_t k = i;
      while (i < line.size() && name_char(line[i], i == k)) ++i;
      if (i == k || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') return false;
      std::string key(line.substr(k, i - k)), val;
      for (i += 2; i < line.size() && line[i] != '"'; ++i) {
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          val += line[i] == 'n' ? '\n' : line[i];
        } else {
          val += line[i];
        }
      }
      if (i >= line.size()) return false;
      ++i;  // the closing quote
      (*labels)[key] = val;
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;  // '}'
  }
  if (i >= line.size() || line[i] != ' ') return false;
  std::string_view rest = line.substr(i + 1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), *value);
  return ec == std::errc() && end == rest.data() + rest.size();
}

}  // namespace

std::span<const MetricDef> metric_definitions() { return kMetrics; }

const MetricDef* find_metric(std::string_view name) {
  for (const auto& m : kMetrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

std::string format_metric_value(double value) {
  if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 9.007199254740992e15) {
    return fmt::format("{}", static_cast<int64_t>(value));
  }
  return fmt::format("{}", value);
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

double unix_now_seconds() {
  using namespace std::chrono;
  return static_cast<double>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count()) / 1000.0;
}

MetricsFile MetricsFile::parse(std::string_view text) {
  MetricsFile f;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line[0] == '#') continue;
    std::string name;
    Labels labels;
    double value = 0;
    if (!parse_sample(line, &name, &labels, &value) || find_metric(name) == nullptr) continue;
    f.samples_[name][std::move(labels)] = value;
  }
  return f;
}

Result<MetricsFile> MetricsFile::load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return MetricsFile();
  BLKVAULT_TRY_ASSIGN(std::string text, read_file(path));
  return parse(text);
}

std::optional<double> MetricsFile::get(std::string_view name, const Labels& labels) const {
  auto it = samples_.find(name);
  if (it == samples_.end()) return std::nullopt;
  auto s = it->second.find(labels);
  if (s == it->second.end()) return std::nullopt;
  return s->second;
}

void MetricsFile::set(std::string_view name, const Labels& labels, double value) {
  samples_[std::string(name)][labels] = value;
}

void MetricsFile::add(std::string_view name, const Labels& labels, double delta) {
  samples_[std::string(name)][labels] += delta;
}

void MetricsFile::erase(std::string_view name, const Labels& match) {
  auto it = samples_.find(name);
  if (it == samples_.end()) return;
  std::erase_if(it->second, [&](const auto& s) {
    return std::all_of(match.begin(), match.end(), [&](const auto& kv) {
      auto l = s.first.find(kv.first);
      return l != s.first.end() && l->second == kv.second;
    });
  });
}

std::string MetricsFile::text() const {
  std::string out;
  for (const MetricDef& m : kMetrics) {
    auto it = samples_.find(m.name);
    if (it == samples_.end() || it->second.empty()) continue;
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", m.name, m.help, m.name,
                       m.type == MetricType::kCounter ? "counter" : "gauge");
    for (const auto& [labels, value] : it->second) {
      std::string l;
      for (const auto& [k, v] : labels) l += fmt::format("{}{}=\"{}\"", l.empty() ? "" : ",", k, escape_label_value(v));
      out += fmt::format("{}{}{}{} {}\n", m.name, l.empty() ? "" : "{", l, l.empty() ? "" : "}",
                         format_metric_value(value));
    }
  }
  return out;
}

Status MetricsFile::publish(const std::string& path) const {
  Status st = write_file_atomic(path, text(), 0644);
  if (!st) return fail(std::move(st).error().wrap("writing the metrics file " + path));
  // Readable by node_exporter's user whatever our umask (cron's may be 077).
  if (::chmod(path.c_str(), 0644) != 0) return fail_errno("making the metrics file " + path + " readable");
  return {};
}

}  // namespace blkvault::app
