// Rolling verify: --subset parts cover every pack once, random shares replay
// by seed, a time budget resumes where it stopped, --older-than skips recent
// packs, damage is claimed only by the run that reads it, and the per-pack
// record (pack_verifications) says what each run found.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "repo/pack.h"
#include "repo/sqlite.h"
#include "repo/verify_progress.h"
#include "repo_support.h"

namespace blkvault::repo {
namespace {
namespace fs = std::filesystem;

class RollingVerifyTest : public RepositoryTest {
 protected:
  // One generation of a random device, in packs of about two chunks.
  void SetUp() override {
    init(2 * kChunk);  // a pack is finished once it holds two chunks
    repo_ = open(true);
    ASSERT_TRUE(repo_);
    SimDevice d{"/dev/vdb", std::vector<uint8_t>(kChunks * kChunk)};
    std::mt19937_64 rng(42);
    for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());
    auto g = backup(*repo_, {&d}, true);
    ASSERT_TRUE(g) << g.error().message();
    auto packs = repo_->pack_verifications();
    ASSERT_TRUE(packs) << packs.error().message();
    for (const auto& p : *packs) all_.insert(p.name);
    ASSERT_GE(all_.size(), 8u);
  }

  VerifyReport verify(const PackSelection& select, size_t threads = 3) {
    VerifyOptions o;
    o.data = true;
    o.threads = threads;
    o.select = select;
    o.clock_ms = clock_;
    auto r = repo_->verify(o, nullptr, {});
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return r ? *r : VerifyReport{};
  }

  std::map<std::string, PackVerification> recorded() {
    std::map<std::string, PackVerification> out;
    auto packs = repo_->pack_verifications();
    EXPECT_TRUE(packs);
    if (packs) {
      for (const auto& p : *packs) out[p.name] = p;
    }
    return out;
  }

  static std::string r_what(const std::string& pack, const ChunkRef& c) {
    return pack + " at offset " + std::to_string(c.offset) + ": chunk " + to_hex(c.id) +
           ": stored bytes fail their checksum";
  }

  static constexpr uint64_t kChunks = 20;
  std::unique_ptr<Repository> repo_;
  std::set<std::string> all_;
  std::function<int64_t()> clock_;
};

TEST_F(RollingVerifyTest, EveryPartOfMRunsChecksDisjointPacksThatCoverThemAll) {
  for (uint32_t parts : {1u, 3u, 5u, 16u}) {
    SCOPED_TRACE("parts " + std::to_string(parts));
    std::set<std::string> seen;
    uint64_t chunks = 0;
    for (uint32_t part = 1; part <= parts; ++part) {
      auto r = verify(PackSelection{.part = part, .parts = parts});
      EXPECT_TRUE(r.clean());
      EXPECT_EQ(r.packs_in_scope, all_.size());
      EXPECT_EQ(r.packs_selected, r.packs_checked.size());
      EXPECT_EQ(r.packs, r.packs_checked.size());
      for (const auto& name : r.packs_checked) {
        EXPECT_TRUE(seen.insert(name).second) << name << " was checked by two parts";
        EXPECT_EQ(pack_slice_hash(name) % parts, part - 1) << name;
      }
      chunks += r.chunks;
    }
    EXPECT_EQ(seen, all_);
    EXPECT_EQ(chunks, kChunks) << "every chunk read once over the parts";
  }
  for (const auto& [name, p] : recorded()) {
    EXPECT_TRUE(p.verified_ms.has_value()) << name;
    EXPECT_TRUE(p.ok) << name;
  }
}

TEST_F(RollingVerifyTest, ARandomShareIsReplayedByItsSeed) {
  auto a = verify(PackSelection{.percent = 25, .seed = 7});
  const size_t quarter = (all_.size() + 3) / 4;
  ASSERT_EQ(a.packs_checked.size(), quarter);
  auto again = verify(PackSelection{.percent = 25, .seed = 7});
  EXPECT_EQ(std::set(again.packs_checked.begin(), again.packs_checked.end()),
            std::set(a.packs_checked.begin(), a.packs_checked.end()));
  // At least one pack, even for a tiny share; all of them at 100%.
  EXPECT_EQ(verify(PackSelection{.percent = 0.01, .seed = 1}).packs_checked.size(), 1u);
  EXPECT_EQ(verify(PackSelection{.percent = 100, .seed = 1}).packs_checked.size(), all_.size());
  // By size: packs whose sizes add up to at most the limit.
  const auto packs = recorded();
  auto sized = verify(PackSelection{.bytes = 3 * (2 * kChunk + 4096), .seed = 3});
  uint64_t total = 0;
  for (const auto& name : sized.packs_checked) total += packs.at(name).size_bytes;
  EXPECT_LE(total, 3 * (2 * kChunk + 4096));
  EXPECT_GE(sized.packs_checked.size(), 1u);
}

TEST_F(RollingVerifyTest, ABudgetStopsStartingPacksAndTheNextRunGoesOnFromThere) {
  // Each clock reading is 10 ms later: a serial run of budget 25 ms reads the
  // start, pack 1 (no check), its record, the check before pack 2, its record
  // and the check before pack 3, which is past the budget: two packs a run.
  std::atomic<int64_t> now{1'000'000};
  clock_ = [&] { return now += 10; };
  std::set<std::string> seen;
  std::vector<std::string> first_run;
  size_t runs = 0;
  while (seen.size() < all_.size()) {
    ASSERT_LT(runs, all_.size()) << "no progress";
    auto r = verify(PackSelection{.budget_ms = 25}, 1);
    ASSERT_EQ(r.packs_checked.size(), std::min<size_t>(2, all_.size() - seen.size()));
    EXPECT_EQ(r.packs_selected, all_.size());
    for (const auto& name : r.packs_checked) EXPECT_TRUE(seen.insert(name).second) << name << " checked again too soon";
    if (runs == 0) first_run = r.packs_checked;
    ++runs;
  }
  EXPECT_EQ(runs, (all_.size() + 1) / 2);
  // Everything is verified now: the next run starts again with the oldest.
  auto next = verify(PackSelection{.budget_ms = 25}, 1);
  EXPECT_EQ(next.packs_checked, first_run);
  // A budget shorter than one pack still checks one pack.
  EXPECT_EQ(verify(PackSelection{.budget_ms = 1}, 4).packs_checked.size(), 1u);
}

TEST_F(RollingVerifyTest, OlderThanSkipsPacksVerifiedRecently) {
  int64_t now = 10 * 86'400'000LL;
  clock_ = [&] { return now; };
  auto half = verify(PackSelection{.percent = 50, .seed = 1});
  ASSERT_EQ(half.packs_checked.size(), (all_.size() + 1) / 2);
  now += 3 * 86'400'000LL;  // three days later
  const int64_t week = 7 * 86'400'000LL;
  // Only the packs never verified qualify.
  auto rest = verify(PackSelection{.older_than_ms = week});
  EXPECT_EQ(rest.packs_checked.size(), all_.size() - half.packs_checked.size());
  for (const auto& name : rest.packs_checked) {
    EXPECT_EQ(std::count(half.packs_checked.begin(), half.packs_checked.end(), name), 0) << name;
  }
  EXPECT_EQ(verify(PackSelection{.older_than_ms = week}).packs_selected, 0u) << "everything verified within a week";
  now += 5 * 86'400'000LL;  // 8 days after the first run, 5 after the second
  auto due = verify(PackSelection{.older_than_ms = week});
  EXPECT_EQ(std::set(due.packs_checked.begin(), due.packs_checked.end()),
            std::set(half.packs_checked.begin(), half.packs_checked.end()));
  for (const auto& [name, p] : recorded()) EXPECT_GE(*p.verified_ms, now - week) << name;
}

TEST_F(RollingVerifyTest, AFlippedByteIsFoundOnlyByThePartThatReadsItsPack) {
  auto img = repo_->device_image(1, "/dev/vdb");
  ASSERT_TRUE(img);
  const ChunkRef victim = img->chunks.at(7);
  const std::string pack = img->packs[victim.pack];
  {
    const std::string file = repo_path() + "/" + pack;
    fs::permissions(file, fs::perms::owner_write, fs::perm_options::add);
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(victim.offset + BlobHeader::kSize + 9);
    f.seekg(at);
    char c;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x01);
    f.seekp(at);
    f.write(&c, 1);
  }
  const uint32_t parts = 4;
  int claimed = 0;
  for (uint32_t part = 1; part <= parts; ++part) {
    auto r = verify(PackSelection{.part = part, .parts = parts});
    const bool mine = std::count(r.packs_checked.begin(), r.packs_checked.end(), pack) == 1;
    EXPECT_TRUE(r.problems.empty());
    if (!mine) {
      EXPECT_TRUE(r.damage.empty()) << "part " << part << " does not read " << pack;
      continue;
    }
    ++claimed;
    ASSERT_EQ(r.damage.size(), 1u);
    EXPECT_EQ(r.damage[0].what, r_what(pack, victim));
    ASSERT_EQ(r.damage[0].affected.size(), 1u);
    EXPECT_EQ(r.damage[0].affected[0].generation, 1u);
    EXPECT_EQ(r.damage[0].affected[0].device, "/dev/vdb");
    EXPECT_EQ(r.damage[0].affected[0].offset_bytes, 7 * kChunk);
    EXPECT_EQ(r.damage[0].affected[0].length_bytes, kChunk);
  }
  EXPECT_EQ(claimed, 1);
  for (const auto& [name, p] : recorded()) {
    ASSERT_TRUE(p.verified_ms) << name;
    EXPECT_EQ(p.ok, name != pack) << name;
    if (name == pack) {
      EXPECT_EQ(p.problem, r_what(pack, victim));
    }
  }
}

TEST_F(RollingVerifyTest, ProgressIsOnlyProgressAMissingTableMeansNeverVerified) {
  auto none = recorded();
  for (const auto& [name, p] : none) EXPECT_FALSE(p.verified_ms) << name;
  verify(PackSelection{});
  ASSERT_TRUE(repo_->rebuild_index());
  for (const auto& [name, p] : recorded()) EXPECT_FALSE(p.verified_ms) << "a rebuilt index starts over: " << name;
  // A metadata-only verify records nothing.
  auto meta = repo_->verify(VerifyOptions{}, nullptr, {});
  ASSERT_TRUE(meta);
  EXPECT_EQ(meta->packs, all_.size());
  for (const auto& [name, p] : recorded()) EXPECT_FALSE(p.verified_ms) << name;
}

TEST_F(RollingVerifyTest, AnUnreadableProgressTableIsAnIndexProblemAndNothingElse) {
  verify(PackSelection{});
  {
    // As a flipped byte in the table's schema would leave it.
    auto db = sql::Db::open(repo_->index_path());
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->exec("DROP TABLE pack_verify"));
    ASSERT_TRUE(db->exec("CREATE TABLE pack_verify(name TEXT PRIMARY KEY, verified_ms INTEGER, ok INTEGER)"));
  }
  auto r = verify(PackSelection{.part = 1, .parts = 2});
  EXPECT_TRUE(r.damage.empty());
  ASSERT_EQ(r.problems.size(), 1u);
  const std::string head = "index: the verification progress (table pack_verify) cannot be read: ";
  EXPECT_EQ(r.problems[0].rfind(head, 0), 0u) << r.problems[0];
  EXPECT_NE(r.problems[0].find("no such column: problem (index rebuild starts it over)"), std::string::npos)
      << r.problems[0];
  EXPECT_FALSE(r.packs_checked.empty()) << "the data is still checked";
  auto status = repo_->pack_verifications();
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message().find("no such column: problem"), std::string::npos) << status.error().message();
}

struct CapturingLogger final : Logger {
  void log(LogLevel level, std::string_view m) override {
    if (level == LogLevel::kWarning) warnings.emplace_back(m);
  }
  std::vector<std::string> warnings;
};

TEST_F(RollingVerifyTest, AnIndexThatCannotRecordProgressCostsAWarningNotTheVerification) {
  (void)verify(PackSelection{});  // creates the table
  const auto before = recorded();
  repo_.reset();
  {
    auto db = sql::Db::open(repo_path() + "/index.sqlite");
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->exec("CREATE TRIGGER no_progress BEFORE INSERT ON pack_verify "
                         "BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END"));
  }
  CapturingLogger log;
  OpenOptions oo;
  oo.cache_dir = cache_dir();
  oo.log = &log;
  auto repo = Repository::open(repo_path(), oo);
  ASSERT_TRUE(repo) << repo.error().message();
  VerifyOptions o;
  o.data = true;
  o.threads = 3;
  clock_ = [] { return int64_t{4'000'000'000'000}; };
  o.clock_ms = clock_;
  auto r = (*repo)->verify(o, nullptr, {});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->clean());
  EXPECT_EQ(r->packs_checked.size(), all_.size());  // every pack still read
  ASSERT_EQ(log.warnings.size(), 1u);                 // once, not per pack
  EXPECT_NE(log.warnings[0].find("verification progress not recorded in the index"), std::string::npos)
      << log.warnings[0];
  EXPECT_NE(log.warnings[0].find("attempt to write a readonly database"), std::string::npos) << log.warnings[0];
  repo_ = std::move(*repo);
  const auto after = recorded();  // nothing changed
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [name, p] : before) EXPECT_EQ(after.at(name).verified_ms, p.verified_ms) << name;
}

}  // namespace
}  // namespace blkvault::repo
