#include "app/maintenance_commands.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/repo_access.h"
#include "repo/repository.h"

namespace blkvault::app {
namespace {

using nlohmann::json;

json gc_json(const repo::GcReport& r) {
  return {{"packs_before", r.packs_before},   {"bytes_before", r.bytes_before},
          {"packs_after", r.packs_after},     {"bytes_after", r.bytes_after},
          {"packs_deleted", r.packs_deleted}, {"packs_rewritten", r.packs_rewritten},
          {"chunks_deleted", r.chunks_deleted}, {"manifests_deleted", r.manifests_deleted},
          {"leftovers_deleted", r.leftovers_deleted}, {"packs_pending", r.packs_pending},
          {"bytes_pending", r.bytes_pending}, {"manifests_pending", r.manifests_pending},
          {"waiting_for", r.waiting_for}, {"warnings", r.warnings}};
}

std::string gc_text(const repo::GcReport& r, bool dry_run) {
  const uint64_t freed = r.bytes_before > r.bytes_after ? r.bytes_before - r.bytes_after : 0;
  std::string text;
  for (const auto& w : r.warnings) text += "warning: " + w + "\n";
  text += fmt::format(
      "gc{}: {} in {} pack(s) before; {} {} empty pack(s), {} {} mostly-garbage pack(s), {} {} unneeded "
      "manifest(s) and {} leftover file(s); {} in {} pack(s) after ({} {})\n",
      dry_run ? " (dry run)" : "", format_bytes(r.bytes_before), r.packs_before, dry_run ? "would delete" : "deleted",
      r.packs_deleted, dry_run ? "would rewrite" : "rewrote", r.packs_rewritten, dry_run ? "would delete" : "deleted",
      r.manifests_deleted, r.leftovers_deleted, format_bytes(r.bytes_after), r.packs_after, format_bytes(freed),
      dry_run ? "would be reclaimed" : "reclaimed");
  if (r.packs_pending + r.manifests_pending > 0) {
    text += fmt::format(
        "gc: {} pack(s) ({}) and {} manifest(s) are condemned and wait for {} backup(s) still running ({}{}); "
        "the next gc deletes what they leave unused\n",
        r.packs_pending, format_bytes(r.bytes_pending), r.manifests_pending, r.waiting_for.size(),
        r.waiting_for.empty() ? std::string() : r.waiting_for.front(),
        r.waiting_for.size() > 1 ? fmt::format(" and {} more", r.waiting_for.size() - 1) : std::string());
  }
  return text;
}

Result<repo::GcReport> run_gc(Context& ctx, repo::Repository& repo, bool dry_run) {
  repo::GcOptions o;
  o.dry_run = dry_run;
  o.wait_s = ctx.lock_wait_s;  // for the backups running when it condemned what it would delete
  ctx.out.note(dry_run ? "gc: planning (dry run)" : "gc: reclaiming space");
  auto r = repo.gc(o, &ctx.cancel);
  if (!r) return tl::unexpected(std::move(r).error().wrap("gc of " + ctx.repo));
  return r;
}

}  // namespace

Status cmd_prune(Context& ctx, const PruneOptions& opts) {
  std::unique_ptr<repo::Repository> opened;
  repo::Repository* repo = opts.repository;
  if (repo == nullptr) {
    BLKVAULT_TRY_ASSIGN(opened, open_repository_for_maintenance(ctx));
    repo = opened.get();
  }
  BLKVAULT_TRY_ASSIGN(auto gens, repo->generations());
  BLKVAULT_TRY_ASSIGN(auto decisions, repo::apply_retention(gens, opts.policy));
  std::vector<repo::GenerationId> remove;
  std::string text;
  json arr = json::array();
  for (const auto& d : decisions) {
    std::string reasons;
    for (const auto& r : d.reasons) reasons += (reasons.empty() ? "" : ", ") + r;
    text += fmt::format("{:<6}  {:>5}  {}  {}\n", d.keep ? "keep" : "remove", d.id, format_time_local(d.started_ms),
                        d.keep ? reasons : "no rule keeps it");
    arr.push_back({{"id", d.id}, {"started_ms", d.started_ms}, {"keep", d.keep}, {"reasons", d.reasons}});
    if (!d.keep) remove.push_back(d.id);
  }
  if (!opts.dry_run && !remove.empty()) BLKVAULT_TRY(repo->forget(remove));
  const size_t kept = decisions.size() - remove.size();
  text += fmt::format("{} {} generation(s), kept {} ({})", opts.dry_run ? "would remove" : "removed", remove.size(),
                      kept, opts.policy.describe());
  json result = {{"policy", opts.policy.describe()},
                 {"dry_run", opts.dry_run},
                 {"decisions", arr},
                 {"removed", remove},
                 {"kept", kept}};
  if (opts.gc) {
    text += "\n";
    BLKVAULT_TRY_ASSIGN(auto report, run_gc(ctx, *repo, opts.dry_run));
    text += gc_text(report, opts.dry_run);
    result["gc"] = gc_json(report);
  } else {
    text += remove.empty() || opts.dry_run ? "\n" : "; 'blkvault gc' reclaims their space\n";
  }
  ctx.out.result(text);
  ctx.out.result_json(result);
  return {};
}

Status cmd_gc(Context& ctx, const GcCommandOptions& opts) {
  BLKVAULT_TRY_ASSIGN(auto repo, open_repository_for_maintenance(ctx));
  BLKVAULT_TRY_ASSIGN(auto report, run_gc(ctx, *repo, opts.dry_run));
  ctx.out.result(gc_text(report, opts.dry_run));
  json j = gc_json(report);
  j["dry_run"] = opts.dry_run;
  ctx.out.result_json(j);
  return {};
}

void MaintenanceCommands::add_to(CLI::App& cli) {
  prune_ = cli.add_subcommand("prune", "Remove generations no keep rule keeps (never a device's last good backup)");
  auto& p = prune_opts_.policy;
  prune_->add_option("--keep-last", p.last, "Keep the N newest generations")->check(CLI::NonNegativeNumber);
  prune_->add_option("--keep-hourly", p.hourly, "Keep the newest generation of each of the last N hours that have one")
      ->check(CLI::NonNegativeNumber);
  prune_->add_option("--keep-daily", p.daily, "... of each of the last N days")->check(CLI::NonNegativeNumber);
  prune_->add_option("--keep-weekly", p.weekly, "... of each of the last N ISO weeks (Monday first)")
      ->check(CLI::NonNegativeNumber);
  prune_->add_option("--keep-monthly", p.monthly, "... of each of the last N months")->check(CLI::NonNegativeNumber);
  prune_->add_option("--keep-yearly", p.yearly, "... of each of the last N years")->check(CLI::NonNegativeNumber);
  prune_->add_flag("-n,--dry-run", prune_opts_.dry_run, "Print what would be kept and removed; change nothing");
  prune_->add_flag("--gc", prune_opts_.gc, "Run gc afterwards to reclaim the space");
  prune_->footer(
      "Buckets use the local time zone (TZ). A generation is kept when any rule keeps it; the newest\n"
      "generation in which each device completed is always kept. Space comes back with 'blkvault gc'.\n"
      "See docs/RETENTION.md.");

  gc_ = cli.add_subcommand("gc", "Reclaim the space no remaining generation uses (crash-safe; a rerun finishes)");
  gc_->add_flag("-n,--dry-run", gc_opts_.dry_run, "Print what would be deleted and rewritten; change nothing");
}

bool MaintenanceCommands::parsed() const {
  return (prune_ != nullptr && prune_->parsed()) || (gc_ != nullptr && gc_->parsed());
}

Status MaintenanceCommands::run(Context& ctx) {
  if (prune_->parsed()) return cmd_prune(ctx, prune_opts_);
  return cmd_gc(ctx, gc_opts_);
}

}  // namespace blkvault::app
