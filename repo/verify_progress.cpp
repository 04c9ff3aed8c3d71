// Rolling verify: pack selection and the pack_verify table (see the header).
#include "repo/verify_progress.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <xxhash.h>

#include "repo/repository_impl.h"

namespace blkvault::repo {
namespace {

constexpr std::string_view kCreate =
    "CREATE TABLE IF NOT EXISTS pack_verify(name TEXT PRIMARY KEY, verified_ms INTEGER NOT NULL, "
    "ok INTEGER NOT NULL, problem TEXT NOT NULL) WITHOUT ROWID";

// The packs' indices in the random order of `seed`.
std::vector<size_t> seeded_order(const std::vector<PackCandidate>& packs, uint64_t seed) {
  std::vector<std::pair<uint64_t, size_t>> ranked;
  ranked.reserve(packs.size());
  for (size_t i = 0; i < packs.size(); ++i) {
    ranked.emplace_back(XXH3_64bits_withSeed(packs[i].name.data(), packs[i].name.size(), seed), i);
  }
  std::sort(ranked.begin(), ranked.end(), [&](const auto& a, const auto& b) {
    return std::tie(a.first, packs[a.second].name) < std::tie(b.first, packs[b.second].name);
  });
  std::vector<size_t> out;
  out.reserve(ranked.size());
  for (const auto& r : ranked) out.push_back(r.second);
  return out;
}

}  // namespace

uint64_t pack_slice_hash(std::string_view name) { return XXH3_64bits(name.data(), name.size()); }

std::vector<size_t> select_packs(const std::vector<PackCandidate>& packs, const PackSelection& select, int64_t now_ms) {
  std::vector<size_t> chosen;
  if (select.parts > 0) {
    for (size_t i = 0; i < packs.size(); ++i) {
      if (pack_slice_hash(packs[i].name) % select.parts == select.part - 1) chosen.push_back(i);
    }
  } else if (select.percent > 0 || select.bytes > 0) {
    const auto ranked = seeded_order(packs, select.seed);
    if (select.percent > 0) {
      // ceil, with a little slack so that 10% of 30 is 3, not 4 through rounding.
      const double want = std::ceil(select.percent * static_cast<double>(packs.size()) / 100.0 - 1e-9);
      const size_t n = std::min(packs.size(), std::max<size_t>(1, static_cast<size_t>(want)));
      chosen.assign(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(n));
    } else {
      uint64_t total = 0;
      for (size_t i : ranked) {
        if (total + packs[i].size_bytes > select.bytes && !chosen.empty()) break;
        total += packs[i].size_bytes;
        chosen.push_back(i);
      }
    }
  } else {
    for (size_t i = 0; i < packs.size(); ++i) chosen.push_back(i);
  }
  if (select.older_than_ms) {
    const int64_t cutoff = now_ms - *select.older_than_ms;
    std::erase_if(chosen, [&](size_t i) { return packs[i].verified_ms && *packs[i].verified_ms > cutoff; });
  }
  std::sort(chosen.begin(), chosen.end(), [&](size_t a, size_t b) {
    const int64_t ta = packs[a].verified_ms.value_or(std::numeric_limits<int64_t>::min());
    const int64_t tb = packs[b].verified_ms.value_or(std::numeric_limits<int64_t>::min());
    return std::tie(ta, packs[a].name) < std::tie(tb, packs[b].name);
  });
  return chosen;
}

Result<std::unordered_map<std::string, PackProgress>> load_pack_progress(sql::Db& db) {
  std::unordered_map<std::string, PackProgress> out;
  BLKVAULT_TRY_ASSIGN(auto exists, db.query_int("SELECT count(*) FROM sqlite_master WHERE name = 'pack_verify'"));
  if (exists.value_or(0) == 0) return out;
  BLKVAULT_TRY_ASSIGN(auto q, db.prepare("SELECT name, verified_ms, ok, problem FROM pack_verify"));
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    out[q.text(0)] = PackProgress{q.int64(1), q.int64(2) != 0, q.text(3)};
  }
  return out;
}

Status record_pack_progress(sql::Db& db, const std::string& name, const PackProgress& progress, bool tidy) {
  BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(db));
  BLKVAULT_TRY(db.exec(kCreate));
  if (tidy) BLKVAULT_TRY(db.exec("DELETE FROM pack_verify WHERE name NOT IN (SELECT name FROM packs)"));
  BLKVAULT_TRY_ASSIGN(auto st, db.prepare(
                                   "INSERT OR REPLACE INTO pack_verify(name, verified_ms, ok, problem) VALUES (?, ?, ?, ?)"));
  BLKVAULT_TRY(st.bind(1, name).bind(2, progress.verified_ms).bind(3, progress.ok ? 1 : 0).bind(4, progress.problem).run());
  BLKVAULT_TRY(tx.commit());
  return {};
}

Result<std::vector<PackVerification>> Repository::pack_verifications() {
  std::lock_guard guard(impl_->mu);
  auto& db = *impl_->db;
  BLKVAULT_TRY_ASSIGN(auto progress, load_pack_progress(db));
  // The packs verify checks: those holding a chunk some remaining generation reads.
  BLKVAULT_TRY_ASSIGN(auto q, db.prepare(
                                  "SELECT p.name, p.size FROM packs p WHERE p.id IN (SELECT c.pack FROM chunk_map m "
                                  "JOIN chunks c ON c.id = m.chunk JOIN generation_devices gd ON gd.device = m.device "
                                  "AND gd.complete = 1 AND gd.generation >= m.gen_from AND gd.generation < m.gen_to "
                                  "JOIN generations g ON g.id = gd.generation AND g.state IN ('complete', 'partial')) "
                                  "ORDER BY p.name"));
  std::vector<PackVerification> out;
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    PackVerification v;
    v.name = q.text(0);
    v.size_bytes = static_cast<uint64_t>(q.int64(1));
    auto it = progress.find(v.name);
    if (it != progress.end()) {
      v.verified_ms = it->second.verified_ms;
      v.ok = it->second.ok;
      v.problem = it->second.problem;
    }
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace blkvault::repo
