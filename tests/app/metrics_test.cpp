// MetricsFile (app/metrics.h) in-process: what it writes reads back the same,
// label values with quotes, backslashes and newlines included; what it cannot
// parse or does not know is dropped; values print as the text format wants.
#include <gtest/gtest.h>

#include "app/job_metrics.h"
#include "app/metrics.h"

namespace blkvault::app {
namespace {

TEST(MetricsFile, WhatItWritesReadsBackTheSameWithEscapedLabels) {
  MetricsFile m;
  const Labels odd = {{"job", "j"}, {"device", "/dev/disk/by-id/a\"b\\c\nd"}};
  m.set("blkvault_device_read_bytes", odd, 4194304);
  m.set("blkvault_last_run_duration_seconds", {{"job", "j"}}, 0.562997166);
  m.add("blkvault_runs_total", {{"job", "j"}, {"outcome", "success"}}, 1);
  m.add("blkvault_runs_total", {{"job", "j"}, {"outcome", "success"}}, 1);
  const std::string text = m.text();
  EXPECT_NE(text.find("blkvault_device_read_bytes{device=\"/dev/disk/by-id/a\\\"b\\\\c\\nd\",job=\"j\"} 4194304\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE blkvault_runs_total counter\nblkvault_runs_total{job=\"j\",outcome=\"success\"} 2\n"),
            std::string::npos)
      << text;
  const MetricsFile back = MetricsFile::parse(text);
  EXPECT_EQ(back.get("blkvault_device_read_bytes", odd), 4194304);
  EXPECT_EQ(back.get("blkvault_last_run_duration_seconds", {{"job", "j"}}), 0.562997166);
  EXPECT_EQ(back.text(), text);
}

TEST(MetricsFile, DropsLinesItCannotParseAndMetricsItDoesNotKnow) {
  const MetricsFile m = MetricsFile::parse(
      "# HELP x y\n"
      "blkvault_last_run_success{job=\"a\"} 1\n"
      "blkvault_no_such_metric{job=\"a\"} 1\n"
      "blkvault_last_run_exit_status{job=\"a} 3\n"
      "blkvault_last_run_duration_seconds{job=\"a\"} fast\n"
      "blkvault_last_success_generation{job=\"a\"} 7");
  EXPECT_EQ(m.get("blkvault_last_run_success", {{"job", "a"}}), 1);
  EXPECT_EQ(m.get("blkvault_last_success_generation", {{"job", "a"}}), 7);
  EXPECT_FALSE(m.get("blkvault_last_run_exit_status", {{"job", "a"}}));
  EXPECT_FALSE(m.get("blkvault_last_run_duration_seconds", {{"job", "a"}}));
  EXPECT_EQ(m.text().find("no_such"), std::string::npos);
}

TEST(MetricsFile, EraseRemovesTheSamplesMatchingEveryGivenLabel) {
  MetricsFile m;
  m.set("blkvault_device_full_read", {{"job", "j"}, {"device", "/a"}, {"reason", "no_baseline"}}, 1);
  m.set("blkvault_device_full_read", {{"job", "j"}, {"device", "/b"}, {"reason", ""}}, 0);
  m.erase("blkvault_device_full_read", {{"job", "j"}, {"device", "/a"}});
  EXPECT_FALSE(m.get("blkvault_device_full_read", {{"job", "j"}, {"device", "/a"}, {"reason", "no_baseline"}}));
  EXPECT_EQ(m.get("blkvault_device_full_read", {{"job", "j"}, {"device", "/b"}, {"reason", ""}}), 0);
  m.erase_label_values("device", [](const std::string& d) { return d == "/a"; });
  EXPECT_EQ(m.text(), "");
}

TEST(MetricsFile, ValuesPrintAsIntegersOrShortestRoundTrip) {
  EXPECT_EQ(format_metric_value(0), "0");
  EXPECT_EQ(format_metric_value(17179869184.0), "17179869184");
  EXPECT_EQ(format_metric_value(1796298110.899), "1796298110.899");
  EXPECT_EQ(format_metric_value(-1), "-1");
  EXPECT_EQ(format_metric_value(0.1), "0.1");
}

TEST(JobMetrics, FullReadReasonsBecomeStableLabelValues) {
  EXPECT_EQ(full_read_reason_code("--full"), "requested");
  EXPECT_EQ(full_read_reason_code("no earlier backup of this device"), "no_baseline");
  EXPECT_EQ(full_read_reason_code("CBT generation changed"), "cbt_generation_changed");
  EXPECT_EQ(full_read_reason_code("device capacity changed"), "capacity_changed");
  EXPECT_EQ(full_read_reason_code("CBT block size changed"), "block_size_changed");
  EXPECT_EQ(full_read_reason_code("CBT snapshot number did not advance (wrap)"), "snap_number_wrap");
  EXPECT_EQ(full_read_reason_code("CBT map size inconsistent with device"), "map_size_inconsistent");
  EXPECT_EQ(full_read_reason_code("CBT map unreadable: reading the CBT map: Input/output error"), "cbt_map_unreadable");
  EXPECT_EQ(full_read_reason_code("the baseline recorded in generation 12 is unreadable"), "baseline_unreadable");
  EXPECT_EQ(full_read_reason_code("generation 3 recorded no CBT baseline"), "baseline_missing");
  EXPECT_EQ(full_read_reason_code("something new"), "other");
}

TEST(JobMetrics, FileNamesComeFromTheJobAndTheRepositoryPath) {
  EXPECT_EQ(job_metrics_path("/var/lib/prometheus/node-exporter", "db-1"),
            "/var/lib/prometheus/node-exporter/blkvault_db-1.prom");
  EXPECT_EQ(verify_metrics_path("/m", "/srv/backup/blkvault"), "/m/blkvault_verify_srv_backup_blkvault.prom");
  EXPECT_EQ(verify_metrics_path("/m", "s3:https://rgw:7480/b/p"), "/m/blkvault_verify_s3_https___rgw_7480_b_p.prom");
}

}  // namespace
}  // namespace blkvault::app
