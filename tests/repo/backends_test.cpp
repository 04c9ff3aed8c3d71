// The repository engine on every storage backend: a local directory and S3
// object storage on a real Ceph RADOS Gateway (tests/ceph_gateway.h; the S3
// cases skip, saying why, when no gateway can be started). Each scenario runs
// unchanged on both: byte-identical restores across generations, dedup,
// abandoned writers, the writer lock, the index as a rebuildable cache,
// forget + gc, large (multipart) packs, encryption, two hosts sharing one
// repository, and rolling verify (its progress in each host's index).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "ceph_gateway.h"
#include "repo/pack.h"
#include "repo/s3_storage.h"
#include "repo_support.h"

namespace blkvault::repo {
namespace {
namespace fs = std::filesystem;

class BackendTest : public RepositoryTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "s3") {
      std::string why;
      gw_ = test::CephGateway::get(&why);
      if (gw_ == nullptr) GTEST_SKIP() << why;
      remote_ = gw_->repo_url(gw_->new_bucket(), "repo");
    }
  }
  bool remote() const { return !remote_.empty(); }
  // Where the index of this repository lives on this host.
  std::string index_file(Repository& r) const { return r.index_path(); }
  test::CephGateway* gw_ = nullptr;
};

TEST_P(BackendTest, GenerationsRestoreByteIdenticalAndVerifyClean) {
  std::mt19937_64 rng(20261125);
  init(256 << 10);
  SimDevice a{"/dev/sda", std::vector<uint8_t>(24 * kChunk + 1234)};
  SimDevice b{"/dev/sdb", std::vector<uint8_t>(9 * kChunk)};
  for (auto* d : {&a, &b}) d->mutate(rng, 10);
  std::map<GenerationId, std::map<std::string, std::vector<uint8_t>>> history;
  {
    auto repo = open(true);
    ASSERT_TRUE(repo);
    for (int round = 0; round < 4; ++round) {
      auto info = backup(*repo, {&a, &b}, false);
      ASSERT_TRUE(info) << info.error().message();
      EXPECT_EQ(info->state, GenerationState::kComplete);
      history[info->id] = {{a.name, a.bytes}, {b.name, b.bytes}};
      for (auto* d : {&a, &b}) d->mutate(rng, 1 + static_cast<int>(rng() % 4));
    }
  }
  auto ro = open(false);
  ASSERT_TRUE(ro);
  EXPECT_EQ(ro->generations()->size(), history.size());
  for (const auto& [gen, devs] : history) {
    for (const auto& [name, bytes] : devs) expect_restores(*ro, gen, SimDevice{name, {}}, bytes);
  }
  auto report = ro->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->clean());
  EXPECT_GT(report->packs, 1u);
  if (remote()) {
    EXPECT_EQ(ro->storage().description(), repo_path());
    EXPECT_EQ(ro->index_path().rfind(cache_dir() + "/", 0), 0u) << "the index is this host's cache";
  }
}

TEST_P(BackendTest, IdenticalChunksAreStoredOnce) {
  init();
  std::vector<uint8_t> pattern(kChunk);
  std::mt19937_64 rng(7);
  for (auto& x : pattern) x = static_cast<uint8_t>(rng());
  SimDevice a{"a", std::vector<uint8_t>(8 * kChunk)};
  for (int i = 0; i < 8; i += 2) std::memcpy(a.bytes.data() + i * kChunk, pattern.data(), kChunk);
  SimDevice b{"b", a.bytes};
  auto repo = open(true);
  auto info = backup(*repo, {&a, &b}, true);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(repo->stats()->chunks, 1u);
  EXPECT_EQ(info->devices[0].new_bytes + info->devices[1].new_bytes, kChunk);
  expect_restores(*repo, info->id, a, a.bytes);
}

TEST_P(BackendTest, AnAbandonedWriterLeavesEarlierGenerationsIntact) {
  init();
  SimDevice d{"d", std::vector<uint8_t>(10 * kChunk + 7)};
  std::mt19937_64 rng(11);
  d.mutate(rng, 10);
  auto repo = open(true);
  auto g1 = backup(*repo, {&d}, true);
  ASSERT_TRUE(g1);
  const auto before = d.bytes;
  d.mutate(rng, 10);
  {
    auto w = repo->begin_generation("h", "v");
    ASSERT_TRUE(w);
    auto dw = (*w)->add_device("d", d.bytes.size(), true);
    ASSERT_TRUE(dw);
    for (uint64_t c : d.dirty) {
      const uint64_t off = c * kChunk;
      ASSERT_TRUE((*dw)->put(c, std::span(d.bytes).subspan(off, std::min<uint64_t>(kChunk, d.bytes.size() - off))));
    }
  }
  EXPECT_EQ(*repo->resolve("latest"), g1->id);
  expect_restores(*repo, g1->id, d, before);
  auto g3 = backup(*repo, {&d}, false);
  ASSERT_TRUE(g3);
  EXPECT_EQ(g3->id, 3u);
  expect_restores(*repo, g3->id, d, d.bytes);
  auto report = repo->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->clean());
}

TEST_P(BackendTest, ASecondWriterIsRefusedNamingTheHolderWhileReadersProceed) {
  init();
  auto writer = open(true);
  ASSERT_TRUE(writer);
  OpenOptions o;
  o.write = true;
  o.cache_dir = dir_ / "other-host-cache";
  auto second = Repository::open(repo_path(), o);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kLocked);
  EXPECT_EQ(second.error().message().rfind("repository " + repo_path() + " is locked by pid " +
                                               std::to_string(::getpid()) + " on host ",
                                           0),
            0u)
      << second.error().message();
  auto reader = open(false);
  ASSERT_TRUE(reader);
  EXPECT_TRUE(reader->generations()->empty());
  writer.reset();
  auto now = Repository::open(repo_path(), o);
  ASSERT_TRUE(now) << now.error().message();
}

TEST_P(BackendTest, TheIndexIsACacheRebuiltFromTheRepository) {
  init(256 << 10);
  std::mt19937_64 rng(99);
  SimDevice a{"a", std::vector<uint8_t>(20 * kChunk + 99)};
  a.mutate(rng, 10);
  std::map<GenerationId, std::vector<uint8_t>> history;
  std::string index;
  {
    auto repo = open(true);
    index = repo->index_path();
    for (int i = 0; i < 3; ++i) {
      auto g = backup(*repo, {&a}, false);
      ASSERT_TRUE(g);
      history[g->id] = a.bytes;
      a.mutate(rng, 3);
    }
  }
  for (const char* s : {"", "-wal", "-shm"}) fs::remove(index + s);
  auto repo = open(true);
  ASSERT_TRUE(repo);
  ASSERT_EQ(repo->generations()->size(), 3u);
  for (const auto& [g, bytes] : history) expect_restores(*repo, g, a, bytes);
  auto g = backup(*repo, {&a}, false);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->id, 4u);
  expect_restores(*repo, g->id, a, a.bytes);
}

TEST_P(BackendTest, ForgetAndGcReclaimSpaceAndKeepTheRest) {
  init(128 << 10);
  std::mt19937_64 rng(5);
  SimDevice d{"d", std::vector<uint8_t>(16 * kChunk)};
  d.mutate(rng, 20);
  std::map<GenerationId, std::vector<uint8_t>> history;
  auto repo = open(true);
  for (int i = 0; i < 4; ++i) {
    auto g = backup(*repo, {&d}, i == 0);
    ASSERT_TRUE(g);
    history[g->id] = d.bytes;
    for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());  // everything changes
    d.mark(0, d.bytes.size());
  }
  ASSERT_TRUE(repo->forget({1, 2}));
  auto before = repo->stats();
  auto report = repo->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_GT(report->packs_deleted, 0u);
  EXPECT_LT(report->bytes_after, report->bytes_before);
  EXPECT_LT(repo->stats()->pack_bytes, before->pack_bytes);
  for (GenerationId g : {3u, 4u}) expect_restores(*repo, g, d, history[g]);
  auto names = repo->storage().list("packs/");
  ASSERT_TRUE(names);
  EXPECT_EQ(names->size(), repo->stats()->packs) << "no unreferenced pack left";
  auto v = repo->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->clean());
}

TEST_P(BackendTest, LargePacksRoundTrip) {
  // 6 MiB packs: on S3 with 5 MiB parts, each one a two-part upload.
  init(6u << 20);
  SimDevice d{"big", std::vector<uint8_t>(200 * kChunk)};
  std::mt19937_64 rng(17);
  for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());
  auto repo = open(true);
  if (auto* s3 = dynamic_cast<S3Storage*>(&repo->storage())) s3->set_part_size(5u << 20);
  auto g = backup(*repo, {&d}, true);
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_GE(repo->stats()->packs, 2u);
  expect_restores(*repo, g->id, d, d.bytes);
}

TEST_P(BackendTest, EncryptedRepositoriesWork) {
  InitOptions o;
  o.chunk_size = kChunk;
  o.pack_size = 1 << 20;
  o.cipher = Cipher::kXChaCha20Poly1305;
  o.passphrase = "correct horse";
  o.kdf = KdfParams{.opslimit = 1, .memlimit = 8 << 20};
  o.cache_dir = cache_dir();
  ASSERT_TRUE(init_repository(repo_path(), o));
  OpenOptions oo;
  oo.write = true;
  oo.cache_dir = cache_dir();
  oo.passphrase = []() -> Result<std::string> { return std::string("correct horse"); };
  auto repo = Repository::open(repo_path(), oo);
  ASSERT_TRUE(repo) << repo.error().message();
  SimDevice d{"d", std::vector<uint8_t>(6 * kChunk, 0x41)};
  auto g = backup(**repo, {&d}, true);
  ASSERT_TRUE(g) << g.error().message();
  expect_restores(**repo, g->id, d, d.bytes);
  repo->reset();
  oo.write = false;
  oo.passphrase = []() -> Result<std::string> { return std::string("wrong"); };
  auto wrong = Repository::open(repo_path(), oo);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::kKey);
}

TEST_P(BackendTest, TwoHostsShareOneRepositoryAndItsChunks) {
  init(256 << 10);
  // Two hosts (own cache directories) back up devices that share half their
  // content, at the same time: the writer lock makes the second wait.
  std::vector<uint8_t> shared(16 * kChunk);
  std::mt19937_64 rng(23);
  for (auto& x : shared) x = static_cast<uint8_t>(rng());
  SimDevice d1{"/dev/host1", shared}, d2{"/dev/host2", shared};
  d1.bytes.resize(32 * kChunk);
  d2.bytes.resize(32 * kChunk);
  for (size_t i = 16 * kChunk; i < d1.bytes.size(); ++i) {
    d1.bytes[i] = static_cast<uint8_t>(rng());
    d2.bytes[i] = static_cast<uint8_t>(rng());
  }
  auto host = [&](const std::string& cache, SimDevice* d, Result<GenerationInfo>* out) {
    OpenOptions o;
    o.write = true;
    o.lock_wait_s = 120;
    o.cache_dir = cache;
    auto r = Repository::open(repo_path(), o);
    if (!r) {
      *out = tl::unexpected(std::move(r).error());
      return;
    }
    *out = backup(**r, {d}, true);
  };
  Result<GenerationInfo> r1 = fail(ErrorCode::kInternal, "not run"), r2 = r1;
  std::thread t1(host, dir_ / "host1-cache", &d1, &r1);
  std::thread t2(host, dir_ / "host2-cache", &d2, &r2);
  t1.join();
  t2.join();
  ASSERT_TRUE(r1) << r1.error().message();
  ASSERT_TRUE(r2) << r2.error().message();
  EXPECT_NE(r1->id, r2->id);
  // The shared half was stored once: 16 shared + 2 × 16 own chunks.
  EXPECT_EQ(r1->devices[0].new_bytes + r2->devices[0].new_bytes, 48 * kChunk);
  for (const std::string& cache : {dir_ / "host1-cache", dir_ / "host2-cache"}) {
    OpenOptions o;
    o.cache_dir = cache;
    auto r = Repository::open(repo_path(), o);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ((*r)->generations()->size(), 2u) << cache << " sees both hosts' generations";
    EXPECT_EQ((*r)->stats()->chunks, 48u);
    expect_restores(**r, r1->id, d1, d1.bytes);
    expect_restores(**r, r2->id, d2, d2.bytes);
  }
}

TEST_P(BackendTest, AnotherHostsGenerationReplacesAFailedRunOfTheSameIdInThisHostsCache) {
  init();
  SimDevice d1{"/dev/h1", std::vector<uint8_t>(4 * kChunk, 1)}, d2{"/dev/h2", std::vector<uint8_t>(4 * kChunk, 2)};
  auto opts = [&](const std::string& cache) {
    OpenOptions o;
    o.write = true;
    o.cache_dir = cache;
    return o;
  };
  const std::string c1 = dir_ / "host1-cache", c2 = dir_ / "host2-cache";
  {
    auto h1 = Repository::open(repo_path(), opts(c1));
    ASSERT_TRUE(h1) << h1.error().message();
    ASSERT_TRUE(backup(**h1, {&d1}, true));
    auto w = (*h1)->begin_generation("host1", "v");  // generation 2, abandoned: failed in host 1's cache only
    ASSERT_TRUE(w);
    EXPECT_EQ((*w)->id(), 2u);
  }
  GenerationId g2 = 0;
  {
    auto h2 = Repository::open(repo_path(), opts(c2));
    ASSERT_TRUE(h2) << h2.error().message();
    auto g = backup(**h2, {&d2}, true);
    ASSERT_TRUE(g) << g.error().message();
    g2 = g->id;
  }
  auto h1 = Repository::open(repo_path(), opts(c1));
  ASSERT_TRUE(h1) << h1.error().message();
  auto gens = (*h1)->generations();
  ASSERT_TRUE(gens);
  // Locally the index (and so the failed run, id 2) is shared: host 2 took id 3.
  // On S3 each host has its own: host 2 committed id 2, which replaced host 1's failed run.
  ASSERT_EQ(gens->size(), remote() ? 2u : 3u);
  EXPECT_EQ(g2, remote() ? 2u : 3u);
  EXPECT_EQ(gens->back().id, g2);
  EXPECT_EQ(gens->back().state, GenerationState::kComplete);
  expect_restores(**h1, g2, d2, d2.bytes);
  auto next = backup(**h1, {&d1}, false);
  ASSERT_TRUE(next) << next.error().message();
  EXPECT_EQ(next->id, g2 + 1);
  auto v = (*h1)->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->clean());
}

TEST_P(BackendTest, RollingVerifyPartsCoverEveryPackOnceAndOnlyTheRightOneFindsDamage) {
  init(2 * kChunk);
  auto repo = open(true);
  ASSERT_TRUE(repo);
  SimDevice d{"/dev/vdc", std::vector<uint8_t>(16 * kChunk)};
  std::mt19937_64 rng(31);
  for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());
  ASSERT_TRUE(backup(*repo, {&d}, true));
  auto img = repo->device_image(1, d.name);
  ASSERT_TRUE(img);
  const ChunkRef victim = img->chunks.at(5);
  const std::string pack = img->packs[victim.pack];
  {
    // Rewritten with one byte flipped (a pack is never overwritten in place).
    auto bytes = repo->storage().get(pack);
    ASSERT_TRUE(bytes);
    (*bytes)[victim.offset + BlobHeader::kSize + 11] ^= 0x04;
    ASSERT_TRUE(repo->storage().remove(pack));
    ASSERT_TRUE(repo->storage().put(pack, *bytes));
  }
  std::set<std::string> seen;
  int claimed = 0;
  for (uint32_t part = 1; part <= 3; ++part) {
    VerifyOptions o{.data = true, .select = PackSelection{.part = part, .parts = 3}};
    auto r = repo->verify(o, nullptr, {});
    ASSERT_TRUE(r) << r.error().message();
    for (const auto& name : r->packs_checked) EXPECT_TRUE(seen.insert(name).second) << name;
    const bool mine = std::count(r->packs_checked.begin(), r->packs_checked.end(), pack) == 1;
    EXPECT_EQ(r->damage.size(), mine ? 1u : 0u) << "part " << part;
    if (mine) {
      ++claimed;
      ASSERT_EQ(r->damage[0].affected.size(), 1u);
      EXPECT_EQ(r->damage[0].affected[0].offset_bytes, 5 * kChunk);
    }
  }
  EXPECT_EQ(claimed, 1);
  auto mine = repo->pack_verifications();
  ASSERT_TRUE(mine);
  EXPECT_EQ(seen.size(), mine->size());
  for (const auto& p : *mine) {
    EXPECT_TRUE(seen.count(p.name)) << p.name;
    ASSERT_TRUE(p.verified_ms) << p.name;
    EXPECT_EQ(p.ok, p.name != pack) << p.name;
  }
  // The progress is in the index: on S3 that is this host's cache, so another
  // host starts with nothing verified; a local repository's index is shared.
  OpenOptions o;
  o.cache_dir = dir_ / "other-host-cache";
  auto other = Repository::open(repo_path(), o);
  ASSERT_TRUE(other) << other.error().message();
  auto theirs = (*other)->pack_verifications();
  ASSERT_TRUE(theirs);
  ASSERT_EQ(theirs->size(), mine->size());
  for (const auto& p : *theirs) EXPECT_EQ(p.verified_ms.has_value(), !remote()) << p.name;
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendTest, ::testing::Values("local", "s3"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace blkvault::repo
