// The repository engine on every storage backend: a local directory and S3
// object storage on a real Ceph RADOS Gateway (tests/ceph_gateway.h; the S3
// cases skip, saying why, when no gateway can be started). Each scenario runs
// unchanged on both: byte-identical restores across generations, dedup,
// abandoned writers (and reusing what they uploaded), the writer lock, the index as a rebuildable cache,
// forget + gc, large (multipart) packs, encryption, two hosts sharing one
// repository, and rolling verify (its progress in each host's index).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "ceph_gateway.h"
#include "common/file_io.h"
#include "repo/pack.h"
#include "repo/repository_impl.h"
#include "repo/condemned.h"
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

TEST_P(BackendTest, TheNextBackupReusesThePacksAnInterruptedOneUploaded) {
  init(256 << 10);  // a pack is finished at its fourth chunk
  constexpr uint64_t kChunks = 22;  // five finished packs and two chunks of a sixth
  SimDevice d{"d", std::vector<uint8_t>(kChunks * kChunk)};
  std::mt19937_64 rng(12);
  for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());  // every chunk distinct
  auto repo = open(true);
  {
    // Stored every chunk, then stopped before its commit (its last pack
    // unfinished): the finished packs are published.
    auto w = repo->begin_generation("h", "v");
    ASSERT_TRUE(w);
    auto dw = (*w)->add_device("d", d.bytes.size(), false);
    ASSERT_TRUE(dw);
    for (uint64_t c = 0; c < kChunks; ++c) ASSERT_TRUE((*dw)->put(c, std::span(d.bytes).subspan(c * kChunk, kChunk)));
  }
  auto left = repo->storage().list("packs/");
  ASSERT_TRUE(left);
  ASSERT_EQ(left->size(), 5u);
  uint64_t uploaded_chunks = 0;
  for (const auto& n : *left) {
    auto entries = read_pack_index(repo->storage(), n);
    ASSERT_TRUE(entries) << n;
    uploaded_chunks += entries->size();
  }
  ASSERT_EQ(uploaded_chunks, 20u);
  // The next run, in a new process, sends only the chunks not uploaded yet.
  repo.reset();
  repo = open(true);
  auto g = backup(*repo, {&d}, true);
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(g->devices.at(0).new_bytes, (kChunks - uploaded_chunks) * kChunk);
  expect_restores(*repo, g->id, d, d.bytes);
  // Nothing to reclaim: the generation references every pack, each chunk once.
  auto report = repo->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->packs_deleted + report->packs_rewritten + report->leftovers_deleted, 0u);
  auto names = repo->storage().list("packs/");
  ASSERT_TRUE(names);
  for (const auto& n : *left) EXPECT_TRUE(std::count(names->begin(), names->end(), n)) << n;
  uint64_t stored = 0;
  for (const auto& n : *names) stored += read_pack_index(repo->storage(), n)->size();
  EXPECT_EQ(stored, kChunks);
  auto v = repo->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->clean());
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

// Forwards to another Storage, calling `before_put` first.
class PutHookStorage final : public ForwardingStorage {
 public:
  PutHookStorage(std::unique_ptr<Storage> inner, std::function<void(std::string_view)> before_put)
      : ForwardingStorage(std::move(inner)), hook_(std::move(before_put)) {}
  Status put(std::string_view n, std::span<const uint8_t> d) override {
    hook_(n);
    return ForwardingStorage::put(n, d);
  }

 private:
  std::function<void(std::string_view)> hook_;
};

// Concurrent writers: only object storage has them (a local repository's
// writers take turns on its one index), so these skip on "local".
class ConcurrentBackupTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (!IsSkipped() && !remote()) GTEST_SKIP() << "a local repository's writers take turns (one SQLite index)";
  }
  OpenOptions host(const std::string& name, bool shared = true) {
    OpenOptions o;
    o.write = true;
    o.shared = shared;
    o.cache_dir = dir_ / (name + "-cache");
    return o;
  }
  std::unique_ptr<Repository> open_as(const OpenOptions& o) {
    auto r = Repository::open(repo_path(), o);
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return r ? std::move(*r) : nullptr;
  }
  std::vector<std::string> storage_list(const std::string& url, const std::string& prefix) {
    auto s = S3Storage::open(url);
    EXPECT_TRUE(s);
    auto names = (*s)->list(prefix);
    EXPECT_TRUE(names);
    return names ? *names : std::vector<std::string>();
  }
  std::unique_ptr<Repository> reader(const std::string& name) {
    OpenOptions o;
    o.cache_dir = dir_ / (name + "-cache");
    return open_as(o);
  }
  // A device of `chunks` random chunks (seeded), backed up in full from `host_name`.
  SimDevice backed_up_device(const std::string& host_name, const std::string& name, uint64_t chunks, uint64_t seed) {
    std::mt19937_64 rng(seed);
    SimDevice d{name, std::vector<uint8_t>(chunks * kChunk)};
    for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());
    auto r = open_as(host(host_name));
    EXPECT_NE(r, nullptr);
    if (r != nullptr) {
      EXPECT_TRUE(backup(*r, {&d}, true));
    }
    return d;
  }
  // Each host's index cache (a new one for a host that has none) restores
  // `gen` of `d` byte-identical, and verify --data finds it clean.
  void expect_restores_on(std::initializer_list<const char*> hosts, GenerationId gen, const SimDevice& d) {
    for (const char* name : hosts) {
      SCOPED_TRACE(name);
      auto r = reader(name);
      ASSERT_NE(r, nullptr);
      expect_restores(*r, gen, d, d.bytes);
      auto v = r->verify(VerifyOptions{.data = true}, nullptr, {});
      ASSERT_TRUE(v);
      EXPECT_TRUE(v->clean()) << (v->problems.empty() ? (v->damage.empty() ? "" : v->damage[0].what) : v->problems[0]);
    }
  }
  // Every blob in every pack of the store, by chunk id: how often each is stored.
  std::map<std::string, int> stored_copies(Repository& r) {
    std::map<std::string, int> out;
    auto names = r.storage().list("packs/");
    EXPECT_TRUE(names);
    for (const auto& n : *names) {
      auto entries = read_pack_index(r.storage(), n);
      EXPECT_TRUE(entries) << n;
      for (const auto& e : *entries) out[to_hex(e.id)]++;
    }
    return out;
  }
};

TEST_P(ConcurrentBackupTest, ThreeHostsBackUpAtOnceAndEachRestoresByteIdentical) {
  init(256 << 10);
  std::mt19937_64 rng(31);
  std::vector<uint8_t> shared(12 * kChunk);
  for (auto& x : shared) x = static_cast<uint8_t>(rng());
  std::vector<SimDevice> devs;
  for (int h = 0; h < 3; ++h) {
    SimDevice d{"/dev/host" + std::to_string(h), shared};
    d.bytes.resize(20 * kChunk);
    for (size_t i = shared.size(); i < d.bytes.size(); ++i) d.bytes[i] = static_cast<uint8_t>(rng());
    devs.push_back(std::move(d));
  }
  // Round 1: all three hold the repository at once (each open succeeds while
  // the others are open: they overlap), and commit in parallel.
  std::vector<std::unique_ptr<Repository>> repos;
  for (int h = 0; h < 3; ++h) {
    repos.push_back(open_as(host("host" + std::to_string(h))));
    ASSERT_NE(repos.back(), nullptr);
  }
  auto marker_count = repos[0]->storage().list("locks/");
  ASSERT_TRUE(marker_count);
  EXPECT_EQ(marker_count->size(), 3u) << "three backup markers at once";
  std::vector<Result<GenerationInfo>> done(3, fail(ErrorCode::kInternal, "not run"));
  {
    std::vector<std::thread> ts;
    for (int h = 0; h < 3; ++h) ts.emplace_back([&, h] { done[h] = backup(*repos[h], {&devs[h]}, true); });
    for (auto& t : ts) t.join();
  }
  std::set<GenerationId> ids;
  for (int h = 0; h < 3; ++h) {
    ASSERT_TRUE(done[h]) << done[h].error().message();
    ids.insert(done[h]->id);
  }
  EXPECT_EQ(ids, (std::set<GenerationId>{1, 2, 3})) << "three generations, no id taken twice";
  repos.clear();
  EXPECT_TRUE(storage_list(repo_path(), "locks/").empty()) << "markers released";
  // Round 2, again at once: each host's device changes a little; what the
  // others stored (the shared part) is reused, not stored again.
  std::vector<uint64_t> changed;
  for (auto& d : devs) {
    d.mutate(rng, 2);
    changed.push_back(d.dirty.size() * kChunk);
  }
  for (int h = 0; h < 3; ++h) repos.push_back(open_as(host("host" + std::to_string(h))));
  std::vector<Result<GenerationInfo>> again(3, fail(ErrorCode::kInternal, "not run"));
  {
    std::vector<std::thread> ts;
    for (int h = 0; h < 3; ++h) ts.emplace_back([&, h] { again[h] = backup(*repos[h], {&devs[h]}, true); });
    for (auto& t : ts) t.join();
  }
  for (int h = 0; h < 3; ++h) {
    ASSERT_TRUE(again[h]) << again[h].error().message();
    EXPECT_LE(again[h]->devices[0].new_bytes, changed[h]) << "only its changes are new";
  }
  repos.clear();
  // Every host's cache shows all six generations and restores all of them.
  for (int h = 0; h < 3; ++h) {
    SCOPED_TRACE("host" + std::to_string(h));
    auto r = reader("host" + std::to_string(h));
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->generations()->size(), 6u);
    for (int o = 0; o < 3; ++o) expect_restores(*r, again[o]->id, devs[o], devs[o].bytes);
    auto v = r->verify(VerifyOptions{.data = true}, nullptr, {});
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->clean());
  }
  // The shared chunks were uploaded by each host while none knew the others'
  // (round 1); the index keeps one copy, and gc leaves exactly one in the store.
  {
    auto g = open_as(host("maintenance", /*shared=*/false));
    ASSERT_NE(g, nullptr);
    GcOptions o;
    o.repack_below = 1.0;  // rewrite every pack holding garbage
    auto report = g->gc(o, nullptr);
    ASSERT_TRUE(report) << report.error().message();
    for (const auto& [id, copies] : stored_copies(*g)) EXPECT_EQ(copies, 1) << "chunk " << id;
    EXPECT_EQ(stored_copies(*g).size(), g->stats()->chunks);
  }
  for (int h = 0; h < 3; ++h) {
    auto r = reader("host" + std::to_string(h));  // sees the gc's mark: learns the rewritten packs
    ASSERT_NE(r, nullptr);
    for (int o = 0; o < 3; ++o) expect_restores(*r, again[o]->id, devs[o], devs[o].bytes);
    auto v = r->verify(VerifyOptions{.data = true}, nullptr, {});
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->clean()) << "host" << h << ": "
                            << (v->problems.empty() ? (v->damage.empty() ? "" : v->damage[0].what) : v->problems[0]);
  }
}

TEST_P(ConcurrentBackupTest, TwoCommitsRacingForOneGenerationIdBothSucceedUnderDifferentIds) {
  init();
  SimDevice d1{"/dev/h1", std::vector<uint8_t>(5 * kChunk, 0x11)}, d2{"/dev/h2", std::vector<uint8_t>(5 * kChunk, 0x22)};
  auto h1 = open_as(host("host1"));
  ASSERT_NE(h1, nullptr);
  // Host 2 looks at the manifests, picks id 1, and just before its publish
  // host 1 publishes id 1: host 2's conditional create is refused.
  bool raced = false;
  Result<GenerationInfo> first = fail(ErrorCode::kInternal, "not run");
  std::unique_ptr<GenerationWriter> w1;
  auto o2 = host("host2");
  o2.wrap_storage = [&](std::unique_ptr<Storage> inner) -> std::unique_ptr<Storage> {
    return std::make_unique<PutHookStorage>(std::move(inner), [&](std::string_view name) {
      if (raced || name.rfind("manifests/", 0) != 0) return;
      raced = true;
      first = w1->commit(false);
    });
  };
  auto h2 = open_as(o2);
  ASSERT_NE(h2, nullptr);
  auto begin1 = h1->begin_generation("host1", "v");
  auto begin2 = h2->begin_generation("host2", "v");
  ASSERT_TRUE(begin1 && begin2);
  w1 = std::move(*begin1);
  EXPECT_EQ(w1->id(), 1u);
  EXPECT_EQ((*begin2)->id(), 1u) << "both start on the same id";
  for (auto [w, d] : {std::pair{w1.get(), &d1}, std::pair{begin2->get(), &d2}}) {
    auto dw = w->add_device(d->name, d->bytes.size(), false);
    ASSERT_TRUE(dw);
    for (uint64_t c = 0; c < 5; ++c) ASSERT_TRUE((*dw)->put(c, std::span(d->bytes).subspan(c * kChunk, kChunk)));
  }
  auto second = (*begin2)->commit(false);
  ASSERT_TRUE(raced);
  ASSERT_TRUE(first) << first.error().message();
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_EQ(first->id, 1u);
  EXPECT_EQ(second->id, 2u) << "the loser commits under the next free id";
  EXPECT_EQ(second->host, "host2");
  w1.reset();
  begin2->reset();
  h1.reset();
  h2.reset();
  for (const char* name : {"host1", "host2", "host3"}) {
    SCOPED_TRACE(name);
    auto r = reader(name);
    ASSERT_NE(r, nullptr);
    auto gens = r->generations();
    ASSERT_TRUE(gens);
    ASSERT_EQ(gens->size(), 2u) << "no failed or in-progress leftover of the lost id";
    EXPECT_EQ((*gens)[0].host, "host1");
    EXPECT_EQ((*gens)[1].host, "host2");
    expect_restores(*r, 1, d1, d1.bytes);
    expect_restores(*r, 2, d2, d2.bytes);
  }
}

TEST_P(ConcurrentBackupTest, TwoHostsBackingUpTheSameDeviceNameAtOnceKeepEachMapRight) {
  init();
  // Both hosts call their disk /dev/sda; each started from generation 1.
  SimDevice base{"/dev/sda", std::vector<uint8_t>(8 * kChunk)};
  std::mt19937_64 rng(41);
  for (auto& x : base.bytes) x = static_cast<uint8_t>(rng());
  {
    auto r = open_as(host("host1"));
    ASSERT_TRUE(backup(*r, {&base}, true));
  }
  SimDevice a = base, b = base;
  a.dirty.clear();
  b.dirty.clear();
  std::memset(a.bytes.data() + 2 * kChunk, 0xAA, kChunk);
  a.mark(2 * kChunk, kChunk);
  std::memset(b.bytes.data() + 5 * kChunk, 0xBB, kChunk);
  b.mark(5 * kChunk, kChunk);
  auto h1 = open_as(host("host1"));
  auto h2 = open_as(host("host2"));
  ASSERT_TRUE(h1 && h2);
  auto ga = backup(*h1, {&a}, false);  // generation 2: delta against 1
  ASSERT_TRUE(ga) << ga.error().message();
  auto gb = backup(*h2, {&b}, false);  // also built on 1, but 2 came first: recorded whole
  ASSERT_TRUE(gb) << gb.error().message();
  EXPECT_EQ(gb->id, 3u);
  EXPECT_FALSE(gb->devices[0].parent.has_value());
  h1.reset();
  h2.reset();
  for (const char* name : {"host1", "host2", "host3"}) {
    SCOPED_TRACE(name);
    auto r = reader(name);
    ASSERT_NE(r, nullptr);
    expect_restores(*r, 1, base, base.bytes);
    expect_restores(*r, 2, a, a.bytes);
    expect_restores(*r, 3, b, b.bytes);
  }
}

// Prune and gc run alongside a backup that deduplicated against a chunk only
// a removed generation holds and whose parent is removed meanwhile: gc
// condemns, deletes nothing the backup may use while it runs, and the next gc
// deletes what its committed generation leaves unused.
TEST_P(ConcurrentBackupTest, GcAlongsideARunningBackupDeletesNothingItUsesAndTheNextGcReclaimsTheRest) {
  init(128 << 10);
  std::mt19937_64 rng(43);
  SimDevice old_dev{"/dev/old", std::vector<uint8_t>(10 * kChunk)}, dev{"/dev/busy", std::vector<uint8_t>(10 * kChunk)};
  for (auto& x : old_dev.bytes) x = static_cast<uint8_t>(rng());
  for (auto& x : dev.bytes) x = static_cast<uint8_t>(rng());
  {
    auto r = open_as(host("busy"));
    ASSERT_TRUE(backup(*r, {&old_dev}, true));  // generation 1: removed below
    ASSERT_TRUE(backup(*r, {&dev}, true));      // generation 2: the running backup's parent, removed below
  }
  // A backup on host "busy" is under way: it changed chunks, one of them to a
  // chunk only generation 1 stores (deduplicated, not stored again).
  auto busy = open_as(host("busy"));
  ASSERT_NE(busy, nullptr);
  auto w = busy->begin_generation("busy", "v");
  ASSERT_TRUE(w);
  dev.mutate(rng, 4);
  std::copy_n(old_dev.bytes.begin(), kChunk, dev.bytes.begin() + 7 * kChunk);
  dev.dirty.insert(7);
  auto dw = (*w)->add_device(dev.name, dev.bytes.size(), true);
  ASSERT_TRUE(dw);
  ASSERT_EQ((*dw)->parent(), std::optional<GenerationId>(2));
  for (uint64_t c : dev.dirty) {
    if (c != 7) {
      ASSERT_TRUE((*dw)->put(c, std::span(dev.bytes).subspan(c * kChunk, kChunk)));
    }
  }
  const uint64_t stored = (*dw)->record().new_bytes;
  ASSERT_TRUE((*dw)->put(7, std::span(dev.bytes).subspan(7 * kChunk, kChunk)));
  EXPECT_EQ((*dw)->record().new_bytes, stored) << "chunk 7 was deduplicated against generation 1";

  // An index rebuild or a key change (exclusive) still waits for it...
  auto refused = Repository::open(repo_path(), host("maint", /*shared=*/false));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message().rfind("repository " + repo_path() + " has a backup in progress: pid " +
                                                std::to_string(::getpid()) + " on host ",
                                            0),
            0u)
      << refused.error().message();
  // ...prune and gc do not: they take the lock at once and condemn.
  auto maint_opts = host("maint", false);
  maint_opts.backups_alongside = true;
  auto maint = open_as(maint_opts);
  ASSERT_NE(maint, nullptr);
  auto packs_before = maint->storage().list("packs/");
  ASSERT_TRUE(packs_before);
  ASSERT_TRUE(maint->forget({1, 2}));
  auto report = maint->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->packs_deleted + report->manifests_deleted + report->leftovers_deleted, 0u);
  EXPECT_GT(report->packs_pending, 0u);
  EXPECT_EQ(report->manifests_pending, 2u);
  ASSERT_EQ(report->waiting_for.size(), 1u);
  EXPECT_EQ(report->waiting_for[0].rfind("pid " + std::to_string(::getpid()) + " on host ", 0), 0u)
      << report->waiting_for[0];
  auto packs_during = maint->storage().list("packs/");
  ASSERT_TRUE(packs_during);
  for (const auto& n : *packs_before) EXPECT_TRUE(std::count(packs_during->begin(), packs_during->end(), n)) << n;
  for (GenerationId g : {1, 2}) EXPECT_TRUE(*maint->storage().exists(manifest_name(g))) << g;
  EXPECT_EQ(maint->storage().list("condemned/")->size(), 2u) << "a condemnation and its backups";

  // The backup commits a delta against the removed generation 2, using the
  // chunk of the removed generation 1; then its marker goes.
  auto g = (*w)->commit(false);
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(g->id, 3u);
  w->reset();
  busy.reset();

  // The next gc deletes what generation 3 leaves unused, and only that.
  auto again = maint->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_GT(again->packs_deleted, 0u);
  EXPECT_EQ(again->manifests_deleted, 1u);
  EXPECT_EQ(again->packs_pending + again->manifests_pending, 0u);
  EXPECT_TRUE(again->waiting_for.empty());
  EXPECT_FALSE(*maint->storage().exists(manifest_name(1)));
  EXPECT_TRUE(*maint->storage().exists(manifest_name(2))) << "generation 3 is a delta against it";
  EXPECT_TRUE(maint->storage().list("condemned/")->empty());
  maint.reset();
  expect_restores_on({"busy", "maint", "fresh"}, 3, dev);
}

// A backup that starts after gc condemned packs stores their chunks again
// rather than deduplicate against them, so a gc may delete them while it runs.
TEST_P(ConcurrentBackupTest, ABackupStartedAfterACondemnationDoesNotUseTheCondemnedPacks) {
  init(128 << 10);
  SimDevice old_dev = backed_up_device("late", "/dev/old", 8, 47);  // generation 1: removed below
  auto early = open_as(host("early"));  // a backup running while gc condemns
  ASSERT_NE(early, nullptr);
  auto maint_opts = host("maint", false);
  maint_opts.backups_alongside = true;
  {
    auto maint = open_as(maint_opts);
    ASSERT_NE(maint, nullptr);
    ASSERT_TRUE(maint->forget({1}));
    auto report = maint->gc(GcOptions{}, nullptr);
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_EQ(report->packs_deleted, 0u);
    EXPECT_GT(report->packs_pending, 0u);
  }
  // Host "late" starts now and backs up the very chunks of generation 1.
  auto late = open_as(host("late"));
  ASSERT_NE(late, nullptr);
  auto w = late->begin_generation("late", "v");
  ASSERT_TRUE(w);
  SimDevice copy{"/dev/copy", old_dev.bytes};
  auto dw = (*w)->add_device(copy.name, copy.bytes.size(), false);
  ASSERT_TRUE(dw);
  for (uint64_t c = 0; c < 8; ++c) ASSERT_TRUE((*dw)->put(c, std::span(copy.bytes).subspan(c * kChunk, kChunk)));
  EXPECT_EQ((*dw)->record().new_bytes, copy.bytes.size()) << "nothing deduplicated against a condemned pack";
  // The early backup ends without committing; gc, while "late" still runs,
  // deletes the condemned packs: "late" was not among the listed backups.
  early.reset();
  {
    auto maint = open_as(maint_opts);
    ASSERT_NE(maint, nullptr);
    auto report = maint->gc(GcOptions{}, nullptr);
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_GT(report->packs_deleted, 0u);
    EXPECT_EQ(report->manifests_deleted, 1u);
    // The packs "late" has uploaded and not yet committed wait for it.
    EXPECT_EQ(report->packs_pending, 4u);
    EXPECT_EQ(report->waiting_for.size(), 1u);
  }
  auto g = (*w)->commit(false);
  ASSERT_TRUE(g) << g.error().message();
  w->reset();
  late.reset();
  expect_restores_on({"late", "fresh"}, g->id, copy);
}

// gc waits (GcOptions::wait_s) for the backups listed with its condemnation,
// not for backups that start after it, and then deletes in the same run.
TEST_P(ConcurrentBackupTest, GcWaitsForTheBackupsRunningWhenItCondemnedAndDeletesInTheSameRun) {
  init(128 << 10);
  SimDevice old_dev = backed_up_device("h", "/dev/old", 6, 53);
  auto running = open_as(host("running"));
  ASSERT_NE(running, nullptr);
  auto maint_opts = host("maint", false);
  maint_opts.backups_alongside = true;
  auto maint = open_as(maint_opts);
  ASSERT_NE(maint, nullptr);
  ASSERT_TRUE(maint->forget({1}));
  std::unique_ptr<Repository> newcomer;
  auto watcher = S3Storage::open(repo_path());
  ASSERT_TRUE(watcher);
  std::thread other([&] {
    // A backup that starts once gc has condemned (and listed the backups
    // then running), while gc waits, and still runs when gc ends.
    for (int i = 0; i < 600; ++i) {
      auto names = (*watcher)->list("condemned/");
      if (names && std::any_of(names->begin(), names->end(), [](const std::string& n) { return n.ends_with(".backups"); })) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    newcomer = open_as(host("newcomer"));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    running.reset();
  });
  const int64_t t0 = now_ms();
  GcOptions o;
  o.wait_s = 60;
  auto report = maint->gc(o, nullptr);
  other.join();
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_GE(now_ms() - t0, 1500);
  EXPECT_GT(report->packs_deleted, 0u);
  EXPECT_EQ(report->manifests_deleted, 1u);
  EXPECT_EQ(report->packs_pending, 0u);
  ASSERT_NE(newcomer, nullptr);
  EXPECT_TRUE(maint->storage().list("condemned/")->empty());
}

// With no backup running, gc aborts an abandoned multipart upload at once, and
// a condemnation whose ".backups" file never came (gc stopped in between) is
// void: deleted, its items condemned anew and carried out.
TEST_P(ConcurrentBackupTest, GcAbortsAnAbandonedUploadAndReplacesAVoidCondemnation) {
  init();
  auto s3 = S3Storage::open(repo_path());
  ASSERT_TRUE(s3);
  ASSERT_TRUE((*s3)->client().create_multipart((*s3)->key_for("packs/ab/ab000000000000000000000000000001")));
  const std::string stray = "packs/cd/cd000000000000000000000000000002";
  ASSERT_TRUE((*s3)->put(stray, std::vector<uint8_t>(100, 7)));
  Condemnation void_one;
  void_one.packs = {stray};
  ASSERT_TRUE(publish_condemnation(**s3, void_one));
  ASSERT_EQ((*s3)->list_uploads()->size(), 1u);
  auto maint_opts = host("maint", false);
  maint_opts.backups_alongside = true;
  auto maint = open_as(maint_opts);
  ASSERT_NE(maint, nullptr);
  auto report = maint->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->leftovers_deleted, 2u) << "the upload and the stray pack";
  EXPECT_EQ(report->packs_pending, 0u);
  EXPECT_TRUE((*s3)->list_uploads()->empty());
  EXPECT_FALSE(*(*s3)->exists(stray));
  EXPECT_TRUE((*s3)->list("condemned/")->empty());
}

TEST_P(ConcurrentBackupTest, ABackupRunsWhilePruneAndGcHoldTheLockButWaitsForOtherHolders) {
  init();
  auto maint_opts = host("maint", /*shared=*/false);
  maint_opts.backups_alongside = true;
  auto maint = open_as(maint_opts);
  ASSERT_NE(maint, nullptr);
  auto alongside = Repository::open(repo_path(), host("h1"));
  ASSERT_TRUE(alongside) << alongside.error().message();
  alongside->reset();
  maint.reset();

  maint = open_as(host("maint", /*shared=*/false));  // an index rebuild's or a key change's lock
  ASSERT_NE(maint, nullptr);
  auto refused = Repository::open(repo_path(), host("h1"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kLocked);
  EXPECT_EQ(refused.error().message().rfind("repository " + repo_path() + " is locked by pid ", 0), 0u)
      << refused.error().message();
  EXPECT_TRUE(maint->storage().list("locks/")->empty()) << "the refused backup took its marker back";
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    maint.reset();
  });
  auto o = host("h1");
  o.lock_wait_s = 30;
  auto waited = Repository::open(repo_path(), o);
  release.join();
  ASSERT_TRUE(waited) << waited.error().message();
}

INSTANTIATE_TEST_SUITE_P(Backends, ConcurrentBackupTest, ::testing::Values("local", "s3"),
                         [](const auto& info) { return info.param; });

INSTANTIATE_TEST_SUITE_P(Backends, BackendTest, ::testing::Values("local", "s3"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace blkvault::repo
