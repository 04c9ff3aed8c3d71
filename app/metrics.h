// app/metrics.h — Prometheus metrics in node_exporter's textfile-collector
// format (docs/METRICS.md): the one table of every metric blkvault writes, and
// MetricsFile, which reads the previous file, lets a run overwrite what it
// knows, and publishes the result atomically.
//
// Why merge rather than rewrite: a failed run knows nothing of the last
// success, yet "no successful backup in 26 h" needs the last success's
// timestamp to survive it; counters (_total) need their previous values.
// The previous file is the state: nothing else is kept.
//
// The file holds, for each metric of the table that has samples, its HELP and
// TYPE lines then one line per sample, `name{label="value",...} value`, labels
// sorted by name, samples sorted by labels; no timestamps (the collector
// refuses them). A file is published as write temp ("<path>.tmp-PID-N", which
// the collector ignores: it reads only *.prom), fsync, rename, fsync dir.
//
// Thread-safety: none; one MetricsFile per run.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace blkvault::app {

enum class MetricType { kGauge, kCounter };

struct MetricDef {
  std::string_view name;
  MetricType type;
  std::string_view help;
};

// Every metric blkvault writes, in the order a file lists them. docs/METRICS.md
// documents each one (tests/app/alert_rules_test.cpp checks both ways).
std::span<const MetricDef> metric_definitions();
const MetricDef* find_metric(std::string_view name);

// Label name -> value; a std::map so a label set has one order.
using Labels = std::map<std::string, std::string>;

class MetricsFile {
 public:
  MetricsFile() = default;

  // The samples of `text` (a file this class wrote). Lines that do not parse
  // and metrics not in the table are dropped: a damaged or older file costs
  // only the values it lost.
  static MetricsFile parse(std::string_view text);
  // parse() of the file at `path`; an empty MetricsFile when it does not exist.
  // Other read errors name the file.
  static Result<MetricsFile> load(const std::string& path);

  std::optional<double> get(std::string_view name, const Labels& labels) const;
  // REQUIRES: `name` is in metric_definitions().
  void set(std::string_view name, const Labels& labels, double value);
  // Adds to a counter (absent: from 0). REQUIRES: as for set().
  void add(std::string_view name, const Labels& labels, double delta);
  // Removes every sample of `name` whose labels include all of `match`.
  void erase(std::string_view name, const Labels& match);
  // Removes every sample (of any metric) having label `key` with a value for
  // which keep(value) is false.
  template <class Keep>
  void erase_label_values(const std::string& key, Keep keep) {
    for (auto& [name, samples] : samples_) {
      std::erase_if(samples, [&](const auto& s) {
        auto it = s.first.find(key);
        return it != s.first.end() && !keep(it->second);
      });
    }
  }

  std::string text() const;
  // Writes text() to `path` atomically, mode 0644 (node_exporter runs as
  // another user). The directory must exist. Errors name the file.
  Status publish(const std::string& path) const;

 private:
  std::map<std::string, std::map<Labels, double>, std::less<>> samples_;
};

// A value as the text format writes it: integers without a fraction, others
// with the digits that read back to the same double.
std::string format_metric_value(double value);
// A label value with \, " and newline escaped.
std::string escape_label_value(std::string_view value);

// Seconds since the epoch, now, with a fraction (what *_timestamp_seconds hold).
double unix_now_seconds();

}  // namespace blkvault::app
