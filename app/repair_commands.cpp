#include "app/repair_commands.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/passphrase.h"
#include "app/repo_access.h"
#include "repo/repository.h"

namespace blkvault::app {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// open_repository, but leaving the index as it is (no repair on open).
Result<std::unique_ptr<repo::Repository>> open_as_is(Context& ctx, bool write) {
  BLKVAULT_TRY(require_repo_path(ctx));
  repo::OpenOptions options;
  options.write = write;
  options.lock_wait_s = ctx.lock_wait_s;
  options.log = &ctx.out;
  options.key_file = ctx.key_file;
  options.cache_dir = ctx.cache_dir;
  options.passphrase = [&ctx]() { return read_passphrase(ctx, "repository " + ctx.repo, /*confirm=*/false); };
  options.index_as_is = true;
  return repo::Repository::open(ctx.repo, options);
}

std::string bytes_range(uint64_t offset, uint64_t length) {
  return fmt::format("bytes {}-{}", offset, offset + length - 1);
}

json range_json(const repo::Damage::Range& r) {
  return {{"generation", r.generation}, {"device", r.device}, {"offset_bytes", r.offset_bytes},
          {"length_bytes", r.length_bytes}};
}

// The (device, offset, length) a bad chunk spoils, once each whatever the generation.
std::vector<std::tuple<std::string, uint64_t, uint64_t>> places(const std::vector<repo::Damage::Range>& affected) {
  std::set<std::tuple<std::string, uint64_t, uint64_t>> s;
  for (const auto& r : affected) s.emplace(r.device, r.offset_bytes, r.length_bytes);
  return {s.begin(), s.end()};
}

std::string generation_list(const std::vector<repo::Damage::Range>& affected, const std::string& device,
                            uint64_t offset) {
  std::string out;
  for (const auto& r : affected) {
    if (r.device == device && r.offset_bytes == offset) out += (out.empty() ? "" : ", ") + std::to_string(r.generation);
  }
  return out;
}

// Text and JSON of one bad chunk.
void describe(const repo::BadChunk& b, std::string& text, json& arr) {
  text += fmt::format("{}: {}\n", repo::to_string(b.state), b.what);
  json affected = json::array();
  for (const auto& r : b.affected) {
    text += fmt::format("  generation {} device {} {}\n", r.generation, r.device, bytes_range(r.offset_bytes, r.length_bytes));
    affected.push_back(range_json(r));
  }
  if (b.affected.empty()) text += "  (no remaining generation uses it)\n";
  json reread = json::array();
  for (const auto& [dev, off, len] : places(b.affected)) {
    reread.push_back({{"device", dev}, {"offset_bytes", off}, {"length_bytes", len}});
    const auto by = std::find_if(b.reread_by.begin(), b.reread_by.end(), [&](const auto& p) { return p.first == dev; });
    if (b.state == repo::BadChunk::State::kDamaged) {
      text += fmt::format("  with --apply: moved aside; the next backup of {} re-reads {}\n", dev, bytes_range(off, len));
    } else if (by == b.reread_by.end()) {
      text += fmt::format("  the next backup of {} re-reads {}\n", dev, bytes_range(off, len));
    } else {
      text += fmt::format("  stays damaged: generation {} re-read {} of {} and the source no longer holds this "
                          "content (generation(s) {} cannot be restored whole)\n",
                          by->second, bytes_range(off, len), dev, generation_list(b.affected, dev, off));
    }
  }
  json by = json::array();
  for (const auto& [dev, gen] : b.reread_by) by.push_back({{"device", dev}, {"generation", gen}});
  arr.push_back({{"state", std::string(repo::to_string(b.state))},
                 {"chunk", repo::to_hex(b.id)},
                 {"pack", b.pack.empty() ? json(nullptr) : json(b.pack)},
                 {"offset", b.pack.empty() ? json(nullptr) : json(b.offset)},
                 {"what", b.what},
                 {"missing_since_ms", b.missing_since_ms == 0 ? json(nullptr) : json(b.missing_since_ms)},
                 {"affected", affected},
                 {"reread", reread},
                 {"reread_by", by}});
}

}  // namespace

Status cmd_repair_index(Context& ctx, const RepairOptions& opts) {
  BLKVAULT_TRY_ASSIGN(auto repository, open_as_is(ctx, opts.apply));
  BLKVAULT_TRY_ASSIGN(repo::IndexCheck check, repository->check_index());
  const bool ok = check.state == repo::IndexCheck::State::kOk;
  std::string text;
  for (const auto& f : check.findings) text += "problem: " + f + "\n";
  json j = {{"repository", ctx.repo},
            {"index", check.path},
            {"state", std::string(repo::to_string(check.state))},
            {"findings", check.findings},
            {"apply", opts.apply}};
  if (!opts.apply) {
    text += ok ? fmt::format("repair index (dry run): index {} agrees with the repository's files; nothing to repair\n",
                             check.path)
               : fmt::format("repair index (dry run): index {} is {}; --apply rebuilds it from packs and manifests\n",
                             check.path, repo::to_string(check.state));
    ctx.out.result(text);
    ctx.out.result_json(j);
    if (ok) return {};
    return fail(ErrorCode::kCorrupt, fmt::format("repair index: the index of {} is {} (listed above); nothing was "
                                                 "changed: 'blkvault repair index --apply' rebuilds it",
                                                 ctx.repo, repo::to_string(check.state)));
  }
  // A damaged index (or a newer blkvault's) is kept next to the new one.
  std::string kept;
  if (check.state == repo::IndexCheck::State::kDamaged || check.state == repo::IndexCheck::State::kNewer) {
    kept = fmt::format("{}.{}-{}", check.path, check.state == repo::IndexCheck::State::kNewer ? "newer" : "damaged",
                       std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count());
    std::error_code ec;
    fs::rename(check.path, kept, ec);
    if (ec) return fail(Error::from_errno("keeping the old index as " + kept, ec.value()));
    if (fs::exists(check.path + "-wal")) fs::rename(check.path + "-wal", kept + "-wal", ec);
  }
  ctx.out.note("repair index: rebuilding the index from packs and manifests");
  if (auto st = repository->rebuild_index(); !st) return fail(std::move(st).error().wrap("repair index of " + ctx.repo));
  BLKVAULT_TRY_ASSIGN(auto gens, repository->generations());
  BLKVAULT_TRY_ASSIGN(auto stats, repository->stats());
  text += fmt::format("repair index: rebuilt {} from the repository's files (it was {}): {} generation(s), {} pack(s), "
                      "{} chunk(s){}\n",
                      check.path, repo::to_string(check.state), gens.size(), stats.packs, stats.chunks,
                      kept.empty() ? "" : "; the old index is kept as " + kept);
  j["rebuilt"] = true;
  j["kept_as"] = kept.empty() ? json(nullptr) : json(kept);
  j["generations"] = gens.size();
  j["packs"] = stats.packs;
  j["chunks"] = stats.chunks;
  ctx.out.result(text);
  ctx.out.result_json(j);
  return {};
}

Status cmd_repair_packs(Context& ctx, const RepairOptions& opts) {
  BLKVAULT_TRY_ASSIGN(auto repository, open_repository(ctx, opts.apply));
  repo::RepairPacksOptions o;
  o.apply = opts.apply;
  o.threads = std::clamp<size_t>(2 * std::thread::hardware_concurrency(), 4, 32);
  BLKVAULT_TRY_ASSIGN(auto stats, repository->stats());
  const int task = ctx.out.progress_begin("repair: checking data", stats.pack_bytes);
  uint64_t done = 0;
  auto report = repository->repair_packs(o, &ctx.cancel, [&](uint64_t bytes) {
    done += bytes;
    ctx.out.progress_update(task, done);
  });
  ctx.out.progress_end(task);
  if (!report) return fail(std::move(report).error().wrap("repair packs of " + ctx.repo));

  std::string text;
  json bad = json::array();
  std::map<repo::BadChunk::State, size_t> count;
  for (const auto& b : report->bad) {
    describe(b, text, bad);
    count[b.state]++;
  }
  json moved = json::array();
  for (const auto& m : report->moved) {
    text += fmt::format("moved aside: pack {}: {} damaged chunk(s) removed{}{}\n", m.pack, m.chunks_removed,
                        m.copy.empty() ? " (the pack was gone)" : "; the pack is kept as " + m.copy,
                        m.replacement.empty() ? "" : fmt::format("; its {} good chunk(s) are now in {}", m.chunks_kept, m.replacement));
    moved.push_back({{"pack", m.pack},
                     {"copy", m.copy.empty() ? json(nullptr) : json(m.copy)},
                     {"replacement", m.replacement.empty() ? json(nullptr) : json(m.replacement)},
                     {"chunks_removed", m.chunks_removed},
                     {"chunks_kept", m.chunks_kept}});
  }
  using S = repo::BadChunk::State;
  const size_t damaged = count[S::kDamaged], missing = count[S::kMissing], lost = count[S::kLost];
  text += fmt::format("repair packs{}: checked {} chunk(s) in {} pack(s) ({} read): {} damaged, {} missing, {} lost",
                      opts.apply ? "" : " (dry run)", report->chunks, report->packs, format_bytes(report->bytes_read),
                      damaged, missing, lost);
  if (opts.apply && !report->moved.empty()) {
    text += fmt::format("; moved damaged chunks aside from {} pack(s)", report->moved.size());
  }
  if (report->leftovers_removed > 0) {
    text += fmt::format("; removed {} damaged pack(s) an interrupted repair had left in packs/", report->leftovers_removed);
  }
  text += missing > 0 ? "; the next backup of each device listed re-reads the missing ranges\n" : "\n";
  ctx.out.result(text);
  ctx.out.result_json({{"repository", ctx.repo},
                       {"apply", opts.apply},
                       {"packs", report->packs},
                       {"chunks", report->chunks},
                       {"bytes_read", report->bytes_read},
                       {"clean", report->clean()},
                       {"damaged", damaged},
                       {"missing", missing},
                       {"lost", lost},
                       {"bad_chunks", bad},
                       {"moved", moved},
                       {"leftovers_removed", report->leftovers_removed}});
  if (!opts.apply && !report->clean()) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("repair packs {}: found {} damaged, {} missing and {} lost chunk(s) (listed above); nothing "
                            "was changed{}",
                            ctx.repo, damaged, missing, lost, damaged > 0 ? ": --apply moves the damaged ones aside" : ""));
  }
  if (opts.apply && lost > 0) {
    return fail(ErrorCode::kCorrupt, fmt::format("repair packs {}: {} chunk(s) stay damaged: the source no longer holds "
                                                 "their content (listed above)",
                                                 ctx.repo, lost));
  }
  return {};
}

std::vector<ByteExtent> add_rereads(std::vector<ByteExtent> extents, const std::vector<repo::MissingChunk>& missing,
                                    uint64_t chunk_size, uint64_t device_size) {
  std::set<uint64_t> offsets;
  for (const auto& m : missing) {
    for (const auto& r : m.affected) {
      if (r.offset_bytes < device_size) offsets.insert(r.offset_bytes / chunk_size * chunk_size);
    }
  }
  for (uint64_t off : offsets) extents.push_back({off, std::min(chunk_size, device_size - off)});
  std::sort(extents.begin(), extents.end(), [](const ByteExtent& a, const ByteExtent& b) { return a.offset < b.offset; });
  std::vector<ByteExtent> out;
  for (const auto& e : extents) {
    if (!out.empty() && e.offset <= out.back().offset + out.back().length) {
      const uint64_t end = std::max(out.back().offset + out.back().length, e.offset + e.length);
      out.back().length = end - out.back().offset;
    } else {
      out.push_back(e);
    }
  }
  return out;
}

void report_rereads(Output& out, repo::Repository& repository, const repo::GenerationInfo& committed,
                    const std::string& device, const std::vector<repo::MissingChunk>& before) {
  const auto* rec = committed.device(device);
  if (before.empty() || rec == nullptr || !rec->complete) return;
  auto after = repository.missing_chunks(device);
  if (!after) {
    out.warning(fmt::format("{}: could not tell which missing chunks were stored again: {}", device,
                            after.error().message()));
    return;
  }
  std::set<repo::ChunkId> still;
  for (const auto& m : *after) still.insert(m.id);
  size_t stored = 0;
  for (const auto& m : before) stored += still.count(m.id) == 0;
  out.note(fmt::format("{}: re-read {} chunk(s) the repository was missing: {} stored again (the generations using "
                       "them are whole again)",
                       device, before.size(), stored));
  for (const auto& m : *after) {
    for (const auto& [dev, off, len] : places(m.affected)) {
      out.warning(fmt::format("{} {}: chunk {} stays missing: generation {} re-read it and the source no longer holds "
                              "that content; generation(s) {} stay damaged (blkvault repair packs lists them)",
                              dev, bytes_range(off, len), repo::to_hex(m.id), committed.id,
                              generation_list(m.affected, dev, off)));
    }
  }
}

void RepairCommands::add_to(CLI::App& cli) {
  repair_ = cli.add_subcommand("repair", "Repair the repository from its immutable files (dry run unless --apply)");
  repair_->require_subcommand(1);
  index_ = repair_->add_subcommand("index", "Say what is wrong with the SQLite index; --apply rebuilds it from packs "
                                            "and manifests (the same as 'index rebuild')");
  index_->add_flag("--apply", index_opts_.apply, "Rebuild the index (a damaged one is kept next to it)");
  packs_ = repair_->add_subcommand("packs", "Read every stored chunk and list the damaged and missing ones with what "
                                            "they spoil; --apply moves damaged blobs aside");
  packs_->add_flag("--apply", packs_opts_.apply,
                   "Rewrite each damaged pack without its damaged blobs (the old one goes to damaged/); the next "
                   "backup of each affected device re-reads those ranges");
  repair_->footer("Exit status 3 when damage was found and not repaired; 0 when there was none or it was repaired.\n"
                  "See docs/ADMIN.md, \"Maintenance: repair\".");
}

bool RepairCommands::parsed() const { return repair_ != nullptr && repair_->parsed(); }

Status RepairCommands::run(Context& ctx) {
  if (index_->parsed()) return cmd_repair_index(ctx, index_opts_);
  if (packs_->parsed()) return cmd_repair_packs(ctx, packs_opts_);
  return fail(ErrorCode::kInternal, "no repair command parsed");
}

}  // namespace blkvault::app
