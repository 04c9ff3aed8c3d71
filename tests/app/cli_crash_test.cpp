// The crash harness: `backup`, `prune --gc` and `gc` killed with SIGKILL at
// their crash points (common/crash_point.h: every file published or removed,
// every index commit, snapshot create/take/destroy). Every point is tested when
// a command has at most 50; otherwise 50 seeded ones (BLKVAULT_TEST_SEED
// replays). After each kill:
//   - the repository opens and `verify --data` is clean;
//   - every generation committed before the kill restores byte-identical;
//   - the next run succeeds, leaves no snapshot held, and (for backup) is a
//     correct incremental: the killed run did not advance the CBT baseline
//     unless it had committed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/backup_support.h"

namespace blkvault::test {
namespace {
namespace fs = std::filesystem;

constexpr int kMaxPoints = 50;

class CrashTest : public BackupCliTest {
 protected:
  void SetUp() override {
    // Small packs: a backup publishes many files, so it has many crash points.
    auto r = bv({"init", "--chunk-size", std::to_string(kChunk), "--pack-size", std::to_string(kChunk), "--kdf-ops",
                 "1", "--kdf-mem", "64K"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    a_ = make_device("a.img", 12 * kChunk, 11);
    b_ = make_device("b.img", 6 * kChunk + 512, 12);
    backup_ok({a_, b_}, diff_args());
    write_round(1);
    backup_ok({a_, b_}, diff_args());
    write_round(2);
    for (int g = 1; g <= 2; ++g) {
      images_[g] = {restore_bytes(std::to_string(g), a_), restore_bytes(std::to_string(g), b_)};
    }
    pristine_ = dir_ / "pristine";
    fs::create_directories(pristine_);
    for (const char* n : {"repo", "sim", "a.img", "b.img", "cache"}) {
      fs::copy(dir_ / n, pristine_ + "/" + n, fs::copy_options::recursive);
    }
  }

  std::vector<std::string> diff_args() const { return {}; }

  // Changes 5 chunks of a and 2 of b through the tracked path.
  void write_round(int round) {
    for (int i = 0; i < 5; ++i) sim_write(a_, static_cast<uint64_t>(2 * i + round % 2) * kChunk + 100, std::string(700, 'a' + round));
    for (int i = 0; i < 2; ++i) sim_write(b_, static_cast<uint64_t>(3 * i + round) * kChunk + 9, std::string(300, 'k' + round));
  }

  void reset_state() {
    for (const char* n : {"repo", "sim", "a.img", "b.img", "cache"}) {
      fs::remove_all(dir_ / n);
      fs::copy(pristine_ + "/" + n, dir_ / n, fs::copy_options::recursive);
    }
  }

  // Crash points one run of `args` reaches, and how long it runs.
  int count_points(const std::vector<std::string>& args, long* run_ms) {
    reset_state();
    const std::string trace = dir_ / "trace";
    fs::remove(trace);
    const auto start = std::chrono::steady_clock::now();
    auto r = bv(args, "", {"BLKVAULT_CRASH_TRACE=" + trace});
    *run_ms = static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count());
    EXPECT_EQ(r.exit_status, 0) << r.err;
    std::ifstream in(trace);
    int n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }

  // Where to kill: every crash point (or 50 seeded ones when there are more),
  // then seeded moments in [0, run_ms] up to 50 kills in all.
  struct Kill {
    int point = 0;       // BLKVAULT_CRASH_AT, or 0
    long after_ms = 0;   // BLKVAULT_CRASH_AFTER_MS otherwise
    std::string env() const {
      return point > 0 ? "BLKVAULT_CRASH_AT=" + std::to_string(point)
                       : "BLKVAULT_CRASH_AFTER_MS=" + std::to_string(after_ms);
    }
    std::string describe(int total) const {
      return point > 0 ? "crash point " + std::to_string(point) + " of " + std::to_string(total)
                       : "after " + std::to_string(after_ms) + " ms";
    }
  };
  std::vector<Kill> kills(int total, long run_ms, uint64_t seed) {
    std::vector<Kill> out;
    std::mt19937_64 rng(seed);
    if (total <= kMaxPoints) {
      for (int k = 1; k <= total; ++k) out.push_back({k, 0});
    } else {
      std::set<int> ks;
      while (ks.size() < kMaxPoints) ks.insert(1 + static_cast<int>(rng() % static_cast<uint64_t>(total)));
      for (int k : ks) out.push_back({k, 0});
    }
    while (out.size() < kMaxPoints) out.push_back({0, static_cast<long>(rng() % static_cast<uint64_t>(run_ms + 1))});
    return out;
  }

  int committed_generations() {
    auto r = bv({"--json", "list"});
    EXPECT_EQ(r.exit_status, 0) << r.err;
    int n = 0;
    const auto j = nlohmann::json::parse(r.out);
    for (const auto& g : j["generations"]) n += g["state"] == "complete";
    return n;
  }

  void expect_consistent(const std::set<int>& gens) {
    auto v = bv({"verify", "--data"});
    EXPECT_EQ(v.exit_status, 0) << v.out << v.err;
    for (int g : gens) {
      expect_same(restore_bytes(std::to_string(g), a_), images_[g].first, "generation " + std::to_string(g) + " of a");
      expect_same(restore_bytes(std::to_string(g), b_), images_[g].second, "generation " + std::to_string(g) + " of b");
    }
  }

  // A's and b's bytes equal, reporting only where they first differ.
  static void expect_same(const std::string& got, const std::string& want, const std::string& what) {
    if (got == want) return;
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
    ADD_FAILURE() << what << ": " << got.size() << " bytes vs " << want.size() << " expected, first difference at "
                  << i;
  }

  // backup --json that may warn (about a snapshot it cleaned up), nothing else.
  nlohmann::json backup_after_crash() {
    auto r = bv({"--json", "backup", a_, b_});
    EXPECT_EQ(r.exit_status, 0) << r.err;
    std::istringstream err(r.err);
    for (std::string line; std::getline(err, line);) {
      EXPECT_EQ(line.rfind("warning: destroyed snapshot ", 0), 0u) << line;
    }
    return nlohmann::json::parse(r.out.empty() ? "{}" : r.out);
  }

  void expect_no_snapshot_held() {
    auto show = sim_show();
    EXPECT_TRUE(show["snapshots"].empty()) << show.dump();
  }

  std::string a_, b_, pristine_;
  std::map<int, std::pair<std::string, std::string>> images_;
};

TEST_F(CrashTest, BackupKilledAtAnyPointLosesNothingAndTheNextRunIsACorrectIncremental) {
  const uint64_t seed = test_seed();
  const std::vector<std::string> args = {"-q", "backup", a_, b_};
  long run_ms = 0;
  const int total = count_points(args, &run_ms);
  ASSERT_GT(total, 10) << "a backup should reach many crash points";
  const auto ks = kills(total, run_ms, seed);
  int killed_runs = 0;
  for (const auto& kill : ks) {
    SCOPED_TRACE("backup killed " + kill.describe(total) + ", BLKVAULT_TEST_SEED=" + std::to_string(seed));
    reset_state();
    auto killed = bv(args, "", {kill.env()});
    if (kill.point > 0) {
      ASSERT_EQ(killed.exit_status, 128 + 9) << killed.out << killed.err;
    }
    ASSERT_TRUE(killed.exit_status == 128 + 9 || killed.exit_status == 0) << killed.out << killed.err;
    killed_runs += killed.exit_status == 128 + 9;
    const int gens = committed_generations();
    ASSERT_TRUE(gens == 2 || gens == 3) << gens;
    expect_consistent({1, 2});
    // The next run cleans up whatever the killed one held and backs up correctly.
    auto next = backup_after_crash();
    ASSERT_TRUE(next.contains("generation"));
    expect_no_snapshot_held();
    const std::string g = next["generation"].dump();
    expect_same(restore_bytes(g, a_), read_whole(a_), "the next backup of a");
    expect_same(restore_bytes(g, b_), read_whole(b_), "the next backup of b");
    for (const auto& d : next["devices"]) {
      EXPECT_EQ(d["mode"], "incremental") << d.dump();
      if (gens == 2) {
        // The killed run did not commit: its changes are read now.
        EXPECT_EQ(d["read_bytes"], d["name"] == a_ ? 5 * kChunk : 2 * kChunk) << d.dump();
      } else {
        EXPECT_EQ(d["read_bytes"], 0) << "the killed run had committed: nothing new" << d.dump();
      }
    }
    if (HasFatalFailure()) return;
  }
  std::printf("[ crash    ] backup: %d crash points in a %ld ms run; %zu kills tried, %d landed (seed %llu)\n", total,
              run_ms, ks.size(), killed_runs, static_cast<unsigned long long>(seed));
}

TEST_F(CrashTest, PruneAndGcKilledAtAnyPointLoseNothingAndARerunFinishes) {
  const uint64_t seed = test_seed();
  for (const auto& args : {std::vector<std::string>{"-q", "prune", "--keep-last", "1", "--gc"},
                           std::vector<std::string>{"-q", "gc"}}) {
    const bool prune = args[1] == "prune";
    if (!prune) {
      // gc with garbage to collect: generation 1 removed beforehand.
      reset_state();
      ASSERT_EQ(bv({"-q", "prune", "--keep-last", "1"}).exit_status, 0);
      for (const char* n : {"repo", "cache"}) {
        fs::remove_all(pristine_ + "/" + n);
        fs::copy(dir_ / n, pristine_ + "/" + n, fs::copy_options::recursive);
      }
    }
    long run_ms = 0;
    const int total = count_points(args, &run_ms);
    ASSERT_GT(total, 2) << args[1];
    const auto ks = kills(total, run_ms, seed);
    int killed_runs = 0;
    for (const auto& kill : ks) {
      SCOPED_TRACE(args[1] + " killed " + kill.describe(total) + ", BLKVAULT_TEST_SEED=" + std::to_string(seed));
      reset_state();
      auto killed = bv(args, "", {kill.env()});
      if (kill.point > 0) {
        ASSERT_EQ(killed.exit_status, 128 + 9) << killed.out << killed.err;
      }
      ASSERT_TRUE(killed.exit_status == 128 + 9 || killed.exit_status == 0) << killed.out << killed.err;
      killed_runs += killed.exit_status == 128 + 9;
      // Generation 2 (the one kept) is intact whatever happened; 1 may be gone.
      expect_consistent({2});
      auto rerun = bv({"-q", "gc"});
      ASSERT_EQ(rerun.exit_status, 0) << rerun.err;
      auto again = nlohmann::json::parse(bv({"--json", "gc"}).out);
      EXPECT_EQ(again["packs_deleted"].get<int>() + again["packs_rewritten"].get<int>() +
                    again["leftovers_deleted"].get<int>(),
                0)
          << "the rerun finished the job: " << again.dump();
      expect_consistent({2});
      if (HasFatalFailure()) return;
    }
    std::printf("[ crash    ] %s: %d crash points in a %ld ms run; %zu kills tried, %d landed (seed %llu)\n",
                args[1].c_str(), total, run_ms, ks.size(), killed_runs, static_cast<unsigned long long>(seed));
  }
}

}  // namespace
}  // namespace blkvault::test
