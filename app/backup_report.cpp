#include "app/backup_report.h"

#include <fmt/format.h>

#include "app/cbt_audit.h"

namespace blkvault::app {
namespace {

std::string throughput(uint64_t bytes, double seconds) {
  return seconds > 0 ? format_rate(static_cast<double>(bytes) / seconds) : "-";
}

nlohmann::json or_null(const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); }

}  // namespace

std::string cbt_audit_seed_text(uint64_t seed) { return fmt::format("0x{:016x}", seed); }

nlohmann::json cbt_audit_json(const std::optional<repo::CbtAudit>& audit) {
  if (!audit) return nullptr;
  nlohmann::json missed = nlohmann::json::array();
  for (const auto& r : audit->missed) missed.push_back({{"offset_bytes", r.offset_bytes}, {"length_bytes", r.length_bytes}});
  return {{"seed", cbt_audit_seed_text(audit->seed)},
          {"percent", audit->percent},
          {"against", audit->against},
          {"unchanged_chunks", audit->unchanged_chunks},
          {"sampled_chunks", audit->sampled_chunks},
          {"sampled_bytes", audit->sampled_bytes},
          {"missed_write", audit->missed_write()},
          {"missed", std::move(missed)}};
}

std::string cbt_audit_text(const repo::CbtAudit& a) {
  std::string head = fmt::format("re-read {} of {} unchanged chunks ({}, seed {})", a.sampled_chunks,
                                 a.unchanged_chunks, format_bytes(a.sampled_bytes), cbt_audit_seed_text(a.seed));
  if (!a.missed_write()) return fmt::format("{}: all match generation {}", head, a.against);
  return fmt::format("{}: {} differ from generation {}: the CBT map missed a write", head, describe_ranges(a.missed),
                     a.against);
}

nlohmann::json print_backup_report(Output& out, const repo::GenerationInfo& info, const std::vector<DeviceReport>& reports,
                                   double seconds, const LimitsReport& limits) {
  uint64_t read = 0, fresh = 0, stored = 0;
  nlohmann::json devices = nlohmann::json::array();
  std::string lines;
  for (const DeviceReport& r : reports) {
    repo::DeviceRecord rec;
    if (const repo::DeviceRecord* found = info.device(r.name)) rec = *found;
    const bool complete = r.error.empty();
    if (complete) {
      read += rec.read_bytes;
      fresh += rec.new_bytes;
      stored += rec.stored_bytes;
    }
    devices.push_back({{"name", r.name},
                       {"size_bytes", r.size_bytes},
                       {"mode", r.incremental ? "incremental" : "full"},
                       {"reason", or_null(r.reason)},
                       {"changed_bytes", r.changed_bytes},
                       {"read_bytes", rec.read_bytes},
                       {"new_bytes", rec.new_bytes},
                       {"stored_bytes", rec.stored_bytes},
                       {"snapshot_read_bytes", r.snapshot_read_bytes},
                       {"cbt_audit", cbt_audit_json(r.audit)},
                       {"duration_s", r.seconds},
                       {"complete", complete},
                       {"error", or_null(r.error)}});
    if (!complete) {
      lines += fmt::format("  {}: FAILED: {}\n", r.name, r.error);
      continue;
    }
    std::string what = r.incremental ? fmt::format("incremental, {} of {} changed", format_bytes(r.changed_bytes),
                                                   format_bytes(r.size_bytes))
                                     : fmt::format("full read ({}) of {}", r.reason, format_bytes(r.size_bytes));
    lines += fmt::format("  {}: {}; read {} in {} ({}); {} new after dedup, {} stored\n", r.name, what,
                         format_bytes(rec.read_bytes), format_duration(r.seconds),
                         throughput(rec.read_bytes, r.seconds), format_bytes(rec.new_bytes),
                         format_bytes(rec.stored_bytes));
    if (r.audit) lines += fmt::format("    CBT audit: {}\n", cbt_audit_text(*r.audit));
  }
  for (const std::string& l : limits.lines) lines += "  " + l + "\n";
  const std::string state(repo::to_string(info.state));
  out.result(fmt::format("generation {} committed ({}): {} device{} in {} ({}); read {}, {} new after dedup, {} "
                         "stored\n{}",
                         info.id, state, reports.size(), reports.size() == 1 ? "" : "s", format_duration(seconds),
                         throughput(read, seconds), format_bytes(read), format_bytes(fresh), format_bytes(stored),
                         lines));
  nlohmann::json j = {{"generation", info.id},
                      {"state", state},
                      {"duration_s", seconds},
                      {"read_bytes", read},
                      {"new_bytes", fresh},
                      {"stored_bytes", stored},
                      {"devices", devices},
                      {"read_limit", limits.read},
                      {"upload_limit", limits.upload}};
  out.result_json(j);
  return j;
}

}  // namespace blkvault::app
