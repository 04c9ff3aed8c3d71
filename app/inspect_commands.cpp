#include "app/inspect_commands.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "app/job_metrics.h"
#include "app/metrics.h"
#include "app/backup_report.h"
#include "app/cbt_audit.h"
#include "app/module_access.h"
#include "app/repo_access.h"
#include "app/verify_selection.h"
#include "kernel/module.h"
#include "repo/condemned.h"
#include "repo/lock.h"
#include "repo/repository.h"
#include "repo/s3_storage.h"
#include "snapshot/session.h"

namespace blkvault::app {
namespace {

using nlohmann::json;

double duration_s(const repo::GenerationInfo& g) {
  return g.finished_ms > g.started_ms ? static_cast<double>(g.finished_ms - g.started_ms) / 1000.0 : 0.0;
}

json device_json(const repo::DeviceRecord& d) {
  json j = {{"name", d.name},         {"size_bytes", d.size_bytes},       {"complete", d.complete},
            {"mode", d.mode},         {"reason", d.reason},               {"changed_bytes", d.changed_bytes},
            {"read_bytes", d.read_bytes}, {"new_bytes", d.new_bytes},     {"stored_bytes", d.stored_bytes},
            {"chunks_changed", d.chunks_changed}};
  j["parent"] = d.parent ? json(*d.parent) : json(nullptr);
  j["error"] = d.complete ? json(nullptr) : json(d.error);
  j["cbt_audit"] = cbt_audit_json(d.cbt_audit);
  return j;
}

// "CBT audit: bytes A..B differ from generation 3 (the CBT map missed a
// write); read fully", or "" when the device's audit found nothing.
std::string missed_write_note(const repo::DeviceRecord& d) {
  if (!d.cbt_audit || !d.cbt_audit->missed_write()) return "";
  return fmt::format("CBT audit: {} differ from generation {} (the CBT map missed a write); read fully",
                     describe_ranges(d.cbt_audit->missed), d.cbt_audit->against);
}

json generation_json(const repo::GenerationInfo& g) {
  json devs = json::array();
  for (const auto& d : g.devices) devs.push_back(device_json(d));
  return {{"id", g.id},
          {"state", std::string(repo::to_string(g.state))},
          {"started", format_time_utc(g.started_ms)},
          {"started_ms", g.started_ms},
          {"duration_s", duration_s(g)},
          {"host", g.host},
          {"tool_version", g.tool_version},
          {"error", g.error.empty() ? json(nullptr) : json(g.error)},
          {"devices", devs}};
}

Status cmd_list_impl(Context& ctx, const ListOptions& opts) {
  BLKVAULT_TRY_ASSIGN(auto repo, open_repository(ctx, false));
  BLKVAULT_TRY_ASSIGN(auto gens, repo->generations());
  if (!opts.device.empty()) {
    bool known = false;
    for (const auto& g : gens) known = known || g.device(opts.device) != nullptr;
    if (!known) {
      std::vector<std::string> names;
      for (const auto& g : gens) {
        for (const auto& d : g.devices) {
          if (std::find(names.begin(), names.end(), d.name) == names.end()) names.push_back(d.name);
        }
      }
      return fail(ErrorCode::kNotFound,
                  fmt::format("device {}: no generation has it (devices in the repository: {})", opts.device,
                              names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
    }
  }
  json arr = json::array();
  std::string text;
  if (opts.device.empty()) {
    text = fmt::format("{:>5}  {:<19}  {:<11}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {:>9}\n", "ID", "STARTED (UTC)",
                       "STATE", "DEVICES", "SIZE", "CHANGED", "READ", "STORED", "TIME");
  } else {
    text = fmt::format("{:>5}  {:<19}  {:<11}  {:<11}  {:>10}  {:>10}  {:>10}  {:>10}  {}\n", "ID", "STARTED (UTC)",
                       "STATE", "MODE", "SIZE", "CHANGED", "READ", "STORED", "NOTE");
  }
  size_t shown = 0;
  for (const auto& g : gens) {
    if (g.state == repo::GenerationState::kPruned) continue;  // removed by prune
    if (!opts.device.empty()) {
      const auto* d = g.device(opts.device);
      if (d == nullptr) continue;
      json j = generation_json(g);
      j["devices"] = json::array({device_json(*d)});
      arr.push_back(std::move(j));
      const std::string audit = missed_write_note(*d);
      const std::string note = !d->complete ? "failed: " + d->error : !audit.empty() ? audit : d->reason;
      text += fmt::format("{:>5}  {:<19}  {:<11}  {:<11}  {:>10}  {:>10}  {:>10}  {:>10}  {}\n", g.id,
                          format_time_utc(g.started_ms), repo::to_string(g.state), d->mode, format_bytes(d->size_bytes),
                          format_bytes(d->changed_bytes), format_bytes(d->read_bytes), format_bytes(d->stored_bytes),
                          note);
    } else {
      arr.push_back(generation_json(g));
      uint64_t size = 0, changed = 0, read = 0, stored = 0;
      for (const auto& d : g.devices) {
        size += d.size_bytes;
        changed += d.changed_bytes;
        read += d.read_bytes;
        stored += d.stored_bytes;
      }
      text += fmt::format("{:>5}  {:<19}  {:<11}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {:>9}\n", g.id,
                          format_time_utc(g.started_ms), repo::to_string(g.state), g.devices.size(), format_bytes(size),
                          format_bytes(changed), format_bytes(read), format_bytes(stored),
                          format_duration(duration_s(g)));
      if (g.state == repo::GenerationState::kFailed && !g.error.empty()) text += "       failed: " + g.error + "\n";
      for (const auto& d : g.devices) {
        if (std::string note = missed_write_note(d); !note.empty()) text += "       " + d.name + ": " + note + "\n";
      }
    }
    ++shown;
  }
  if (shown == 0) text = "no generations yet\n";
  ctx.out.result(text);
  ctx.out.result_json({{"repository", ctx.repo}, {"generations", arr}});
  return {};
}

Status cmd_verify_impl(Context& ctx, const VerifyOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  std::random_device rd;
  BLKVAULT_TRY_ASSIGN(auto sel, parse_verify_selection(opts, rd()));
  BLKVAULT_TRY_ASSIGN(auto repo, open_repository(ctx, false));
  repo::VerifyOptions vo;
  vo.data = opts.data;
  vo.select = sel.select;
  // Like restore: one synchronous read per chunk, so twice as many workers as
  // cores keep the storage busy while others decompress and hash.
  vo.threads = std::clamp<size_t>(2 * std::thread::hardware_concurrency(), 4, 32);
  if (!opts.generation.empty()) {
    BLKVAULT_TRY_ASSIGN(auto id, repo->resolve(opts.generation));
    vo.generation = id;
  }
  int task = -1;
  uint64_t done = 0;
  vo.planned = [&](uint64_t bytes) { task = ctx.out.progress_begin("verify data", bytes); };
  auto report = repo->verify(vo, &ctx.cancel, [&](uint64_t bytes) {
    done += bytes;
    if (task >= 0) ctx.out.progress_update(task, done);
  });
  if (task >= 0) ctx.out.progress_end(task);
  if (!report) return tl::unexpected(std::move(report).error().wrap("verifying " + ctx.repo));

  std::string text;
  const bool selecting = vo.select.any();
  const uint64_t left = report->packs_selected - report->packs;
  if (selecting) {
    text += fmt::format("selected {} of {} pack(s): {}\n", report->packs_selected, report->packs_in_scope,
                        describe_selection(opts, sel));
    if (sel.random) text += fmt::format("  (--seed {} selects the same packs again)\n", vo.select.seed);
    if (vo.select.budget_ms) {
      text += left == 0 ? fmt::format("  budget {}: checked all {}\n", opts.budget, report->packs)
                        : fmt::format("  budget {}: checked {}, {} left for the next run\n", opts.budget,
                                      report->packs, left);
    }
  }
  json damage = json::array();
  for (const auto& p : report->problems) text += "problem: " + p + "\n";
  for (const auto& d : report->damage) {
    text += "damaged: " + d.what + "\n";
    json affected = json::array();
    if (d.affected.empty()) text += "  (no generation uses it)\n";
    for (const auto& r : d.affected) {
      text += fmt::format("  generation {} device {} bytes {}-{}\n", r.generation, r.device, r.offset_bytes,
                          r.offset_bytes + r.length_bytes - 1);
      affected.push_back({{"generation", r.generation},
                          {"device", r.device},
                          {"offset_bytes", r.offset_bytes},
                          {"length_bytes", r.length_bytes}});
    }
    damage.push_back({{"what", d.what}, {"affected", affected}});
  }
  const std::string scope = vo.generation ? fmt::format("generation {}", *vo.generation)
                                          : fmt::format("{} generation(s)", report->generations);
  text += fmt::format("verified {}: {} pack(s), {} chunk(s){}: {}\n", scope, report->packs, report->chunks,
                      opts.data ? fmt::format(", {} read and re-hashed", format_bytes(report->bytes_read))
                                : std::string(" (metadata only; --data reads every byte)"),
                      report->clean() ? "no damage" : fmt::format("{} problem(s), {} damaged chunk(s)",
                                                                  report->problems.size(), report->damage.size()));
  // Only a verify of the whole repository: a part's damage count would clear
  // what another part found (docs/METRICS.md).
  if (!ctx.metrics_dir.empty() && !vo.generation && !selecting) {
    VerifyMetrics vm{ctx.repo, opts.data, unix_now_seconds(),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                     report->problems.size(), report->damage.size()};
    if (Status w = write_verify_metrics(ctx.metrics_dir, vm); !w) ctx.out.log(LogLevel::kWarning, w.error().message());
  }
  ctx.out.result(text);
  ctx.out.result_json({{"repository", ctx.repo},
                       {"data", opts.data},
                       {"generation", vo.generation ? json(*vo.generation) : json(nullptr)},
                       {"generations", report->generations},
                       {"packs", report->packs},
                       {"chunks", report->chunks},
                       {"bytes_read", report->bytes_read},
                       {"subset", opts.subset.empty() ? json(nullptr) : json(opts.subset)},
                       {"seed", sel.random ? json(vo.select.seed) : json(nullptr)},
                       {"older_than", opts.older_than.empty() ? json(nullptr) : json(opts.older_than)},
                       {"budget", opts.budget.empty() ? json(nullptr) : json(opts.budget)},
                       {"packs_in_scope", report->packs_in_scope},
                       {"packs_selected", report->packs_selected},
                       {"packs_checked", report->packs_checked},
                       {"packs_left", left},
                       {"clean", report->clean()},
                       {"problems", report->problems},
                       {"damage", damage}});
  if (!report->clean()) {
    return fail(ErrorCode::kCorrupt, fmt::format("verify {}: found {} problem(s) and {} damaged chunk(s) (listed above)",
                                                 ctx.repo, report->problems.size(), report->damage.size()));
  }
  return {};
}

// The module half of `status`: never fails the command (a host without the
// module still has a repository to report on).
json module_status(Context& ctx, std::string& text) {
  json j = {{"spec", ctx.module_spec}};
  auto module = kernel::open_module(ctx.module_spec);
  if (!module) {
    j["available"] = false;
    j["error"] = module.error().message();
    text += fmt::format("module: not available: {}\n", module.error().message());
    return j;
  }
  auto& m = **module;
  j["available"] = true;
  j["description"] = m.description();
  auto version = m.version();
  if (version) j["version"] = kernel::to_string(*version);
  text += fmt::format("module: {}\n", m.description());
  json tracked = json::array();
  auto devs = m.tracked_devices();
  if (!devs) {
    text += fmt::format("  tracked devices: unknown: {}\n", devs.error().message());
  } else if (devs->empty()) {
    text += "  tracked devices: none (a device is tracked from its first backup on)\n";
  } else {
    text += "  tracked devices:\n";
    for (const auto& d : *devs) {
      auto path = m.device_path(d.dev);
      const std::string name = path ? *path : kernel::to_string(d.dev);
      text += fmt::format("    {} ({}): {}, CBT generation {}, snap number {}, {} blocks of {}\n", name,
                          kernel::to_string(d.dev), format_bytes(d.capacity_bytes), kernel::to_string(d.generation_id),
                          d.snap_number, d.block_count, format_bytes(d.block_size_bytes));
      tracked.push_back({{"device", name},
                         {"dev", kernel::to_string(d.dev)},
                         {"capacity_bytes", d.capacity_bytes},
                         {"cbt_generation", kernel::to_string(d.generation_id)},
                         {"snap_number", d.snap_number},
                         {"block_size_bytes", d.block_size_bytes},
                         {"block_count", d.block_count}});
    }
  }
  j["tracked_devices"] = tracked;
  json snaps = json::array();
  auto held = m.snapshots();
  auto ours = snapshot::owned_snapshots(ctx.state_dir);
  if (!held) {
    text += fmt::format("  snapshots: unknown: {}\n", held.error().message());
  } else {
    text += held->empty() ? "  snapshots held: none\n" : "  snapshots held:\n";
    for (const auto& id : *held) {
      const std::string s = kernel::to_string(id);
      const bool mine = ours && std::find(ours->begin(), ours->end(), s) != ours->end();
      text += fmt::format("    {} ({})\n", s,
                          mine ? "blkvault's: a run is going, or one died; 'blkvault cleanup' releases a dead run's"
                               : "another tool's; blkvault leaves it alone");
      snaps.push_back({{"id", s}, {"owner", mine ? "blkvault" : "other"}});
    }
  }
  j["snapshots"] = snaps;
  return j;
}

// The repository's data-verification coverage (verify --data records it).
json verification_status(repo::Repository& repo, bool per_pack, std::string& text) {
  auto packs = repo.pack_verifications();
  if (!packs) {
    text += fmt::format("  data verified: unknown: {}\n", packs.error().message());
    return {{"error", packs.error().message()}};
  }
  uint64_t verified = 0, damaged = 0;
  std::optional<int64_t> oldest;
  json list = json::array();
  std::string lines;
  for (const auto& p : *packs) {
    if (p.verified_ms) {
      ++verified;
      if (!p.ok) ++damaged;
      if (!oldest || *p.verified_ms < *oldest) oldest = p.verified_ms;
    }
    if (!per_pack) continue;
    const std::string result = !p.verified_ms ? "never" : p.ok ? "ok" : "damaged: " + p.problem;
    lines += fmt::format("    {}  {:>10}  {}{}\n", p.name, format_bytes(p.size_bytes),
                         p.verified_ms ? format_time_utc(*p.verified_ms) + " UTC  " : std::string(), result);
    list.push_back({{"name", p.name},
                    {"size_bytes", p.size_bytes},
                    {"last_verified", p.verified_ms ? json(format_time_utc(*p.verified_ms)) : json(nullptr)},
                    {"last_verified_ms", p.verified_ms ? json(*p.verified_ms) : json(nullptr)},
                    {"result", !p.verified_ms ? json(nullptr) : json(p.ok ? "ok" : "damaged")},
                    {"problem", p.verified_ms && !p.ok ? json(p.problem) : json(nullptr)}});
  }
  const uint64_t total = packs->size();
  if (total == 0) {
    text += "  data verified: no packs yet\n";
  } else if (verified == 0) {
    text += fmt::format("  data verified: 0 of {} pack(s) (never: blkvault verify --data)\n", total);
  } else {
    text += fmt::format("  data verified: {} of {} pack(s), oldest {} UTC{}{}\n", verified, total,
                        format_time_utc(*oldest),
                        verified < total ? fmt::format(", {} never", total - verified) : std::string(),
                        damaged > 0 ? fmt::format(", {} damaged at the last check", damaged) : std::string());
  }
  if (per_pack) text += "  packs (last data verification):\n" + lines;
  json j = {{"packs", total},
            {"verified", verified},
            {"never_verified", total - verified},
            {"damaged", damaged},
            {"oldest_verified", oldest ? json(format_time_utc(*oldest)) : json(nullptr)},
            {"oldest_verified_ms", oldest ? json(*oldest) : json(nullptr)}};
  if (per_pack) j["per_pack"] = list;
  return j;
}

Status cmd_status_impl(Context& ctx, const StatusOptions& opts) {
  std::string text;
  json j;
  j["module"] = module_status(ctx, text);
  if (ctx.repo.empty()) {
    text += "repository: none given (--repo PATH or BLKVAULT_REPO)\n";
    j["repository"] = nullptr;
  } else {
    BLKVAULT_TRY_ASSIGN(auto holder, repo::RepoLock::holder(ctx.repo));
    BLKVAULT_TRY_ASSIGN(auto backups, repo::RepoLock::backups(ctx.repo));
    BLKVAULT_TRY_ASSIGN(auto repo, open_repository(ctx, false));
    BLKVAULT_TRY_ASSIGN(auto gens, repo->generations());
    BLKVAULT_TRY_ASSIGN(auto stats, repo->stats());
    const auto& c = repo->config();
    size_t committed = 0, failed = 0;
    for (const auto& g : gens) {
      if (g.state == repo::GenerationState::kComplete || g.state == repo::GenerationState::kPartial) ++committed;
      if (g.state == repo::GenerationState::kFailed) ++failed;
    }
    text += fmt::format("repository: {}\n  format {}, id {}, chunk size {}, zstd level {}\n", ctx.repo,
                        c.format_version, c.id, format_bytes(c.chunk_size), c.compression_level);
    text += fmt::format("  stored: {} in {} pack(s), {} unique chunk(s) of {}\n", format_bytes(stats.pack_bytes),
                        stats.packs, stats.chunks, format_bytes(stats.chunk_raw_bytes));
    text += fmt::format("  generations: {} committed, {} failed\n", committed, failed);
    text += fmt::format("  lock: {}\n", holder ? "held by " + *holder : "free");
    json condemned = nullptr;
    if (repo::is_remote_repository(ctx.repo)) {
      text += fmt::format("  backups in progress: {}\n", backups.empty() ? std::string("none") : fmt::format("{}", fmt::join(backups, "; ")));
      // What gc condemned and will delete once the backups running then have
      // ended (docs/OBJECT-STORAGE.md).
      BLKVAULT_TRY_ASSIGN(auto conds, repo::load_condemnations(repo->storage()));
      size_t packs = 0, manifests = 0;
      for (const auto& cd : conds) {
        packs += cd.packs.size();
        manifests += cd.manifests.size();
      }
      condemned = {{"condemnations", conds.size()}, {"packs", packs}, {"manifests", manifests}};
      text += conds.empty() ? std::string("  condemned by gc: none\n")
                            : fmt::format("  condemned by gc: {} pack(s) and {} manifest(s), deleted by the first gc "
                                          "after the backups running when it condemned them\n",
                                          packs, manifests);
    }
    // The last good backup of each device, newest generation first.
    json last = json::array();
    std::vector<std::string> seen;
    for (auto it = gens.rbegin(); it != gens.rend(); ++it) {
      if (it->state != repo::GenerationState::kComplete && it->state != repo::GenerationState::kPartial) continue;
      for (const auto& d : it->devices) {
        if (!d.complete || std::find(seen.begin(), seen.end(), d.name) != seen.end()) continue;
        seen.push_back(d.name);
        if (seen.size() == 1) text += "  last good backup per device:\n";
        text += fmt::format("    {}: generation {} at {} UTC ({}, {})\n", d.name, it->id, format_time_utc(it->finished_ms),
                            d.mode, format_bytes(d.size_bytes));
        last.push_back({{"device", d.name}, {"generation", it->id}, {"finished", format_time_utc(it->finished_ms)},
                        {"finished_ms", it->finished_ms}});
      }
    }
    if (seen.empty()) text += "  last good backup per device: none yet\n";
    json verification = verification_status(*repo, opts.packs, text);
    // Every write the CBT audit caught, oldest first: each one is a tracker that lied.
    json events = json::array();
    std::string last_event;
    for (const auto& g : gens) {
      if (g.state != repo::GenerationState::kComplete && g.state != repo::GenerationState::kPartial) continue;
      for (const auto& d : g.devices) {
        if (!d.cbt_audit || !d.cbt_audit->missed_write()) continue;
        events.push_back({{"generation", g.id}, {"device", d.name}, {"cbt_audit", cbt_audit_json(d.cbt_audit)}});
        last_event = fmt::format("generation {} on {} ({} differ from generation {})", g.id, d.name,
                                 describe_ranges(d.cbt_audit->missed), d.cbt_audit->against);
      }
    }
    text += events.empty() ? std::string("  CBT audit: no missed write found\n")
                           : fmt::format("  CBT audit: {} missed write(s) found, the last in {}\n", events.size(),
                                         last_event);
    j["repository"] = {{"path", ctx.repo},
                       {"format", c.format_version},
                       {"id", c.id},
                       {"chunk_size", c.chunk_size},
                       {"pack_bytes", stats.pack_bytes},
                       {"packs", stats.packs},
                       {"chunks", stats.chunks},
                       {"generations_committed", committed},
                       {"generations_failed", failed},
                       {"lock_holder", holder ? json(*holder) : json(nullptr)},
                       {"backups_in_progress", backups},
                       {"condemned", condemned},
                       {"last_good", last},
                       {"verification", verification},
                       {"cbt_audit_events", events}};
  }
  ctx.out.result(text);
  ctx.out.result_json(j);
  return {};
}

Status cmd_cleanup_impl(Context& ctx) {
  BLKVAULT_TRY_ASSIGN(auto module, open_module_for_snapshots(ctx));
  BLKVAULT_TRY_ASSIGN(int n, snapshot::cleanup_orphans(*module, ctx.state_dir, ctx.out));
  ctx.out.result(n == 0 ? "no snapshot left behind by blkvault\n"
                        : fmt::format("released {} snapshot(s) left behind by interrupted runs\n", n));
  ctx.out.result_json({{"released", n}});
  return {};
}

}  // namespace

Status cmd_list(Context& ctx, const ListOptions& opts) { return cmd_list_impl(ctx, opts); }
Status cmd_verify(Context& ctx, const VerifyOptions& opts) { return cmd_verify_impl(ctx, opts); }
Status cmd_status(Context& ctx, const StatusOptions& opts) { return cmd_status_impl(ctx, opts); }
Status cmd_cleanup(Context& ctx) { return cmd_cleanup_impl(ctx); }

Status cmd_index_rebuild(Context& ctx) {
  BLKVAULT_TRY_ASSIGN(auto repo, open_repository(ctx, true));
  BLKVAULT_TRY(repo->rebuild_index());
  BLKVAULT_TRY_ASSIGN(auto gens, repo->generations());
  BLKVAULT_TRY_ASSIGN(auto stats, repo->stats());
  ctx.out.result(fmt::format("index rebuilt from the repository's files: {} generation(s), {} pack(s), {} chunk(s)\n",
                             gens.size(), stats.packs, stats.chunks));
  ctx.out.result_json({{"generations", gens.size()}, {"packs", stats.packs}, {"chunks", stats.chunks}});
  return {};
}

void InspectCommands::add_to(CLI::App& cli) {
  list_ = cli.add_subcommand("list", "List the repository's generations (all runs, with their state)");
  list_->add_option("--device", list_opts_.device, "Only this device: one line per generation that has it");

  verify_ = cli.add_subcommand("verify",
                               "Check the repository: index, manifests, packs; with --data read and re-hash every chunk");
  verify_->add_flag("--data", verify_opts_.data,
                    "Read, decompress and re-hash every stored chunk (of the packs selected: all by default)");
  verify_->add_option("--generation", verify_opts_.generation, "Only what this generation (ID or 'latest') uses");
  verify_->add_option("--subset", verify_opts_.subset,
                      "With --data, only some packs: N/M (the N-th of M parts by pack name hash), P% (a random "
                      "share) or SIZE (random packs up to that size)")
      ->type_name("N/M|P%|SIZE");
  verify_->add_option("--seed", verify_opts_.seed, "The seed of a random --subset (printed by every such run)")
      ->type_name("S");
  verify_->add_option("--older-than", verify_opts_.older_than,
                      "With --data, only packs not verified within this DURATION (e.g. 7d)")
      ->type_name("DURATION");
  verify_->add_option("--budget", verify_opts_.budget,
                      "With --data, check packs least recently verified first until this DURATION (e.g. 30m, 2h) "
                      "is used up; the next run goes on from there")
      ->type_name("DURATION");
  verify_->footer("Exit status 3 when damage is found; each damaged chunk is listed with the generations,\n"
                  "devices and byte ranges it affects. Each pack --data reads is recorded with the time\n"
                  "and result ('blkvault status' shows the coverage).");

  status_ = cli.add_subcommand("status",
                               "Show the kernel module (version, tracked devices, snapshots held) and the repository "
                               "(size, generations, last good backup per device, lock holder, data verified)");
  status_->add_flag("--packs", status_opts_.packs, "List every pack with its last data verification");
  cleanup_ = cli.add_subcommand("cleanup", "Release snapshots (and their diff storage) left by killed blkvault runs");

  index_ = cli.add_subcommand("index", "Maintain the SQLite index (a cache of the repository's files)");
  index_->require_subcommand(1);
  index_rebuild_ = index_->add_subcommand("rebuild", "Recreate the index from packs and manifests");
}

bool InspectCommands::parsed() const {
  for (auto* c : {list_, verify_, status_, cleanup_, index_}) {
    if (c != nullptr && c->parsed()) return true;
  }
  return false;
}

Status InspectCommands::run(Context& ctx) {
  if (list_->parsed()) return cmd_list(ctx, list_opts_);
  if (verify_->parsed()) return cmd_verify(ctx, verify_opts_);
  if (status_->parsed()) return cmd_status(ctx, status_opts_);
  if (cleanup_->parsed()) return cmd_cleanup(ctx);
  if (index_rebuild_->parsed()) return cmd_index_rebuild(ctx);
  return fail(ErrorCode::kInternal, "no inspect command parsed");
}

}  // namespace blkvault::app
