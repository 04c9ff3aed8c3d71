// forget + gc: every remaining generation stays restorable byte for byte
// (including those stored as deltas against removed ones), space comes back,
// and a failure at any storage operation (= a kill just before it) leaves a
// repository that the next gc finishes cleaning.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>

#include "repo/manifest.h"
#include "repo_support.h"

namespace blkvault::repo {
namespace {
namespace fs = std::filesystem;

// Fails every mutating storage operation from the `fail_at`-th on (0-based),
// as if the process had been killed right before it.
class FailingStorage final : public ForwardingStorage {
 public:
  FailingStorage(std::unique_ptr<Storage> inner, int fail_at) : ForwardingStorage(std::move(inner)), fail_at_(fail_at) {}
  int ops() const { return ops_; }

  Status put(std::string_view name, std::span<const uint8_t> data) override {
    BLKVAULT_TRY(step(name));
    return ForwardingStorage::put(name, data);
  }
  Result<std::unique_ptr<Writer>> create(std::string_view name) override {
    BLKVAULT_TRY_ASSIGN(auto w, ForwardingStorage::create(name));
    return std::unique_ptr<Writer>(new FailingWriter(*this, std::string(name), std::move(w)));
  }
  Status remove(std::string_view name) override {
    BLKVAULT_TRY(step(name));
    return ForwardingStorage::remove(name);
  }

 private:
  class FailingWriter final : public Writer {
   public:
    FailingWriter(FailingStorage& s, std::string name, std::unique_ptr<Writer> w)
        : s_(s), name_(std::move(name)), w_(std::move(w)) {}
    Status append(std::span<const uint8_t> d) override { return w_->append(d); }
    uint64_t size() const override { return w_->size(); }
    Status commit() override {
      BLKVAULT_TRY(s_.step(name_));
      return w_->commit();
    }

   private:
    FailingStorage& s_;
    std::string name_;
    std::unique_ptr<Writer> w_;
  };

  Status step(std::string_view name) {
    if (ops_++ >= fail_at_ && fail_at_ >= 0) {
      return fail(ErrorCode::kIo, "injected failure before writing " + std::string(name));
    }
    return {};
  }

  int fail_at_;
  int ops_ = 0;
};

class GcTest : public RepositoryTest {
 protected:
  // 10 generations of two devices (small packs so garbage spreads over many),
  // then generations 2..8 except 5 forgotten.
  void build_history() {
    init(256 << 10);
    std::mt19937_64 rng(2026);
    a_ = SimDevice{"a", std::vector<uint8_t>(24 * kChunk + 100)};
    b_ = SimDevice{"b", std::vector<uint8_t>(10 * kChunk)};
    a_.mutate(rng, 20);
    b_.mutate(rng, 20);
    auto repo = open(true);
    for (int i = 0; i < 10; ++i) {
      auto g = backup(*repo, {&a_, &b_}, false);
      ASSERT_TRUE(g) << g.error().message();
      history_[g->id] = {a_.bytes, b_.bytes};
      a_.mutate(rng, 6);
      b_.mutate(rng, 2);
    }
    ASSERT_TRUE(repo->forget({2, 3, 4, 6, 7, 8}));
    for (GenerationId g : {2, 3, 4, 6, 7, 8}) history_.erase(g);
  }

  void expect_all_remaining(Repository& repo) {
    auto gens = repo.generations();
    ASSERT_TRUE(gens);
    std::set<GenerationId> committed;
    for (const auto& g : *gens) {
      if (g.state == GenerationState::kComplete) committed.insert(g.id);
    }
    std::set<GenerationId> expected;
    for (const auto& [g, _] : history_) expected.insert(g);
    EXPECT_EQ(committed, expected);
    for (const auto& [g, bytes] : history_) {
      expect_restores(repo, g, a_, bytes.first);
      expect_restores(repo, g, b_, bytes.second);
    }
    auto report = repo.verify(VerifyOptions{.data = true}, nullptr, {});
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->clean()) << (report->problems.empty() ? report->damage.at(0).what : report->problems[0]);
  }

  uint64_t repo_bytes() {
    uint64_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(repo_path() + "/packs")) {
      if (e.is_regular_file()) n += e.file_size();
    }
    return n;
  }

  SimDevice a_, b_;
  std::map<GenerationId, std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> history_;
};

TEST_F(GcTest, ForgottenGenerationsAreGoneAndTheRestRestoreByteIdentical) {
  build_history();
  auto repo = open(true);
  auto r = repo->resolve("3");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "generation 3 was removed by prune");
  const uint64_t before = repo_bytes();
  auto dry = repo->gc(GcOptions{.dry_run = true}, nullptr);
  ASSERT_TRUE(dry) << dry.error().message();
  EXPECT_EQ(repo_bytes(), before) << "a dry run changes nothing";
  EXPECT_GT(dry->packs_deleted + dry->packs_rewritten, 0u);

  auto report = repo->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->bytes_before, before);
  EXPECT_LT(repo_bytes(), before);
  EXPECT_EQ(report->bytes_after, repo_bytes());
  EXPECT_EQ(report->packs_deleted, dry->packs_deleted);
  EXPECT_EQ(report->packs_rewritten, dry->packs_rewritten);
  expect_all_remaining(*repo);
  // Every backup here is an incremental on the one before: each removed
  // generation's manifest is still needed by a later one.
  for (GenerationId g : {1, 5, 9, 10}) EXPECT_TRUE(fs::exists(repo_path() + "/" + manifest_name(g)));

  // A second gc has nothing left to do.
  auto again = repo->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->packs_deleted + again->packs_rewritten + again->manifests_deleted + again->leftovers_deleted, 0u);

  // The immutable files still describe everything: rebuild and check again.
  ASSERT_TRUE(repo->rebuild_index());
  expect_all_remaining(*repo);
  auto r2 = repo->resolve("7");
  ASSERT_FALSE(r2);
}

TEST_F(GcTest, ManifestsNoRemainingGenerationNeedsAreDeleted) {
  init();
  std::mt19937_64 rng(4);
  a_ = SimDevice{"a", std::vector<uint8_t>(6 * kChunk)};
  a_.mutate(rng, 5);
  auto repo = open(true);
  ASSERT_TRUE(backup(*repo, {&a_}, false));  // 1: full (first)
  a_.mutate(rng, 2);
  ASSERT_TRUE(backup(*repo, {&a_}, false));  // 2: delta on 1
  a_.mutate(rng, 2);
  auto g3 = backup(*repo, {&a_}, true);  // 3: full read, a new chain
  ASSERT_TRUE(g3);
  EXPECT_FALSE(g3->devices[0].parent);
  a_.mutate(rng, 2);
  auto g4 = backup(*repo, {&a_}, false);  // 4: delta on 3
  ASSERT_TRUE(g4);
  history_[g4->id] = {a_.bytes, {}};
  // 2 and 3 are removed: 4 still needs 3's manifest, nothing needs 1's or 2's.
  ASSERT_TRUE(repo->forget({1, 2, 3}));
  auto report = repo->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->manifests_deleted, 2u);
  EXPECT_FALSE(fs::exists(repo_path() + "/" + manifest_name(1)));
  EXPECT_FALSE(fs::exists(repo_path() + "/" + manifest_name(2)));
  EXPECT_FALSE(fs::exists(repo_path() + "/pruned/00000000000000000002"));
  EXPECT_TRUE(fs::exists(repo_path() + "/" + manifest_name(3)));
  expect_restores(*repo, 4, a_, a_.bytes);
  ASSERT_TRUE(repo->rebuild_index());
  expect_restores(*repo, 4, a_, a_.bytes);
  auto gens = repo->generations();
  ASSERT_EQ(gens->size(), 2u);  // 3 (pruned, needed) and 4
  EXPECT_EQ(gens->at(0).state, GenerationState::kPruned);
}

// Every generation of a device removed: its newest one's map is kept only
// while its manifest is (a backup may be building on it); with no backup
// running, one gc deletes the manifest, the map and the packs together, and
// leaves no condemnation behind.
TEST_F(GcTest, ADeviceWhoseEveryGenerationIsRemovedLeavesNothingAfterOneGc) {
  init();
  std::mt19937_64 rng(6);
  a_ = SimDevice{"a", std::vector<uint8_t>(6 * kChunk)};
  for (auto& x : a_.bytes) x = static_cast<uint8_t>(rng());
  SimDevice b{"b", std::vector<uint8_t>(4 * kChunk)};
  for (auto& x : b.bytes) x = static_cast<uint8_t>(rng());
  auto repo = open(true);
  ASSERT_TRUE(backup(*repo, {&a_}, true));  // 1
  a_.mutate(rng, 2);
  ASSERT_TRUE(backup(*repo, {&a_}, false));  // 2: delta on 1
  ASSERT_TRUE(backup(*repo, {&b}, true));    // 3: kept
  const uint64_t before = repo_bytes();
  ASSERT_TRUE(repo->forget({1, 2}));
  auto report = repo->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->manifests_deleted, 2u);
  EXPECT_GT(report->packs_deleted + report->packs_rewritten, 0u);
  EXPECT_EQ(report->packs_pending + report->manifests_pending, 0u);
  EXPECT_LT(repo_bytes(), before);
  EXPECT_TRUE(repo->storage().list("condemned/")->empty()) << "nothing is left condemned";
  auto again = repo->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->packs_deleted + again->packs_rewritten + again->manifests_deleted + again->leftovers_deleted, 0u);
  auto stats = repo->stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->chunks, 4u) << "only generation 3's chunks are left";
  expect_restores(*repo, 3, b, b.bytes);
}

// A damaged condemnation (an object of a gc on object storage) is void: a
// backup goes on, and gc replaces it instead of stopping.
TEST_F(GcTest, ADamagedCondemnationIsVoidAndReplaced) {
  build_history();
  {
    auto storage = LocalStorage::open(repo_path());
    ASSERT_TRUE(storage);
    const std::string junk = "{\"version\": 1, \"packs\": 7}";
    ASSERT_TRUE((*storage)->put("condemned/00000000000000000005",
                                std::span(reinterpret_cast<const uint8_t*>(junk.data()), junk.size())));
  }
  auto repo = open(true);
  ASSERT_NE(repo, nullptr);
  std::mt19937_64 rng(8);
  a_.mutate(rng, 1);
  b_.mutate(rng, 1);
  auto g = backup(*repo, {&a_, &b_}, false);
  ASSERT_TRUE(g) << g.error().message();
  history_[g->id] = {a_.bytes, b_.bytes};
  auto report = repo->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_TRUE(repo->storage().list("condemned/")->empty());
  expect_all_remaining(*repo);
}

TEST_F(GcTest, LeftoversOfInterruptedWritesAreCleanedUp) {
  build_history();
  // An interrupted backup's published pack, and temp files of interrupted writes.
  {
    auto storage = LocalStorage::open(repo_path());
    ASSERT_TRUE(storage);
    std::vector<uint8_t> junk(1000, 7);
    ASSERT_TRUE((*storage)->put("packs/ff/ff00000000000000000000000000000a", junk));
  }
  std::ofstream(repo_path() + "/packs/ff/ff00000000000000000000000000000b.tmp-1-1") << "x";
  std::ofstream(repo_path() + "/manifests/00000000000000000099.tmp-1-2") << "x";
  auto repo = open(true);
  auto report = repo->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->leftovers_deleted, 3u);
  EXPECT_FALSE(fs::exists(repo_path() + "/packs/ff/ff00000000000000000000000000000a"));
  EXPECT_FALSE(fs::exists(repo_path() + "/manifests/00000000000000000099.tmp-1-2"));
  expect_all_remaining(*repo);
}

TEST_F(GcTest, AFailureAtAnyStepLosesNothingAndARerunFinishes) {
  build_history();
  // Count gc's mutating storage operations once, on a copy.
  const std::string pristine = dir_ / "pristine";
  fs::copy(repo_path(), pristine, fs::copy_options::recursive);
  int total = 0;
  {
    OpenOptions o;
    o.write = true;
    FailingStorage* fs_ptr = nullptr;
    o.wrap_storage = [&](std::unique_ptr<Storage> s) {
      auto f = std::make_unique<FailingStorage>(std::move(s), -1);
      fs_ptr = f.get();
      return std::unique_ptr<Storage>(std::move(f));
    };
    auto repo = Repository::open(repo_path(), o);
    ASSERT_TRUE(repo);
    ASSERT_TRUE((*repo)->gc(GcOptions{}, nullptr));
    total = fs_ptr->ops();
  }
  ASSERT_GT(total, 3);
  for (int k = 0; k < total; ++k) {
    SCOPED_TRACE("failure before mutating operation " + std::to_string(k) + " of " + std::to_string(total));
    fs::remove_all(repo_path());
    fs::copy(pristine, repo_path(), fs::copy_options::recursive);
    {
      OpenOptions o;
      o.write = true;
      o.wrap_storage = [&](std::unique_ptr<Storage> s) {
        return std::unique_ptr<Storage>(std::make_unique<FailingStorage>(std::move(s), k));
      };
      auto repo = Repository::open(repo_path(), o);
      ASSERT_TRUE(repo);
      auto r = (*repo)->gc(GcOptions{}, nullptr);
      ASSERT_FALSE(r) << "operation " << k << " should have failed";
      EXPECT_NE(r.error().message().find("injected failure"), std::string::npos) << r.error().message();
    }
    {
      auto repo = open(true);
      ASSERT_TRUE(repo);
      expect_all_remaining(*repo);
      auto r = repo->gc(GcOptions{}, nullptr);
      ASSERT_TRUE(r) << r.error().message();
      expect_all_remaining(*repo);
      auto again = repo->gc(GcOptions{}, nullptr);
      ASSERT_TRUE(again);
      EXPECT_EQ(again->packs_deleted + again->packs_rewritten + again->leftovers_deleted, 0u);
    }
    if (HasFatalFailure()) return;
  }
}

TEST_F(GcTest, AFailureAtAnyStepOfABackupCommitKeepsEarlierGenerations) {
  init(256 << 10);
  std::mt19937_64 rng(8);
  a_ = SimDevice{"a", std::vector<uint8_t>(12 * kChunk)};
  a_.mutate(rng, 10);
  {
    auto repo = open(true);
    auto g = backup(*repo, {&a_}, false);
    ASSERT_TRUE(g);
    history_[g->id] = {a_.bytes, {}};
  }
  a_.mutate(rng, 10);
  const auto dirty = a_.dirty;
  const std::string pristine = dir_ / "pristine";
  fs::copy(repo_path(), pristine, fs::copy_options::recursive);
  auto pack_files = [&] {
    std::set<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(repo_path() + "/packs")) {
      if (e.is_regular_file()) names.insert(e.path().filename().string());
    }
    return names;
  };
  const auto pristine_packs = pack_files();
  // What the backup stores when nothing fails.
  uint64_t clean_new_bytes = 0;
  {
    auto repo = open(true);
    auto g = backup(*repo, {&a_}, false);
    ASSERT_TRUE(g) << g.error().message();
    clean_new_bytes = g->devices.at(0).new_bytes;
    ASSERT_GT(clean_new_bytes, 0u);
  }
  bool adopted_some = false;
  for (int k = 0;; ++k) {
    SCOPED_TRACE("failure before mutating operation " + std::to_string(k));
    fs::remove_all(repo_path());
    fs::copy(pristine, repo_path(), fs::copy_options::recursive);
    a_.dirty = dirty;
    bool failed = false;
    {
      OpenOptions o;
      o.write = true;
      o.wrap_storage = [&](std::unique_ptr<Storage> s) {
        return std::unique_ptr<Storage>(std::make_unique<FailingStorage>(std::move(s), k));
      };
      auto repo = Repository::open(repo_path(), o);
      ASSERT_TRUE(repo);
      auto g = backup(**repo, {&a_}, false, 1);
      failed = !g;
    }
    auto repo = open(true);
    ASSERT_TRUE(repo);
    if (!failed) {
      // k is past the last operation: the backup committed; done.
      expect_restores(*repo, 2, a_, a_.bytes);
      EXPECT_GE(k, 2) << "at least a pack and the manifest";
      EXPECT_TRUE(adopted_some) << "no failure came after a published pack";
      break;
    }
    expect_restores(*repo, 1, a_, history_[1].first);
    auto report = repo->verify(VerifyOptions{.data = true}, nullptr, {});
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->clean());
    // The failed run did not move the baseline: the retry is an incremental on 1.
    auto last = repo->last_good("a");
    ASSERT_TRUE(last && *last);
    EXPECT_EQ((*last)->generation, 1u);
    // The packs the failed run published: the retry stores their chunks no more.
    std::set<std::string> published;
    for (const auto& n : pack_files()) {
      if (!pristine_packs.count(n) && n.find(".tmp") == std::string::npos) published.insert(n);
    }
    a_.dirty = dirty;
    auto g = backup(*repo, {&a_}, false);
    ASSERT_TRUE(g) << g.error().message();
    expect_restores(*repo, g->id, a_, a_.bytes);
    if (published.empty()) {
      EXPECT_EQ(g->devices.at(0).new_bytes, clean_new_bytes);
    } else {
      adopted_some = true;
      EXPECT_LT(g->devices.at(0).new_bytes, clean_new_bytes);
    }
    auto clean = repo->gc(GcOptions{}, nullptr);
    ASSERT_TRUE(clean);
    // gc keeps them: the retry's generation references every chunk in them.
    const auto after_gc = pack_files();
    for (const auto& n : published) EXPECT_TRUE(after_gc.count(n)) << n << " was not reused";
    expect_restores(*repo, g->id, a_, a_.bytes);
    expect_restores(*repo, 1, a_, history_[1].first);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace blkvault::repo
