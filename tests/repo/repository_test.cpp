// Repository engine: init/open errors, randomized multi-device round trips,
// dedup, abort, partial generations, index replay and rebuild, verify.
#include "repo/repository.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "repo/chunk_codec.h"
#include "repo/manifest.h"
#include "repo/sqlite.h"
#include "repo_support.h"

namespace blkvault::repo {
namespace {
namespace fs = std::filesystem;

TEST_F(RepositoryTest, InitWritesADocumentedConfigAndRefusesToReinitialise) {
  init();
  EXPECT_TRUE(fs::exists(repo_path() + "/config"));
  EXPECT_TRUE(fs::exists(repo_path() + "/index.sqlite"));
  EXPECT_EQ(fs::status(repo_path()).permissions() & fs::perms::all, fs::perms::owner_all);
  auto again = init_repository(repo_path(), InitOptions{});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message(), repo_path() + " is already a repository (it has a config file)");

  fs::create_directories(dir_ / "full");
  std::ofstream(dir_ / "full/x") << "x";
  auto busy = init_repository(dir_ / "full", InitOptions{});
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().message(), dir_ / "full" + " is not empty (init needs a new or empty directory)");

  auto repo = open(false);
  ASSERT_TRUE(repo);
  EXPECT_EQ(repo->config().chunk_size, kChunk);
  EXPECT_EQ(repo->config().compression_level, 3);
  EXPECT_EQ(repo->config().id.size(), 32u);
}

TEST_F(RepositoryTest, InitRefusesBadParameters) {
  InitOptions o;
  o.chunk_size = 3 << 20;
  auto st = init_repository(dir_ / "r1", o);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.error().message(), "chunk size 3145728 is not a power of two from 64 KiB to 16 MiB");
  o = InitOptions{};
  o.compression_level = 25;
  st = init_repository(dir_ / "r2", o);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "compression level 25 is not between 1 and 19");
  EXPECT_FALSE(fs::exists(dir_ / "r1"));
}

TEST_F(RepositoryTest, OpenExplainsWhatIsWrong) {
  auto missing = Repository::open(dir_ / "nope", OpenOptions{});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message(), "repository " + dir_ / "nope" + " does not exist (create it with: blkvault init)");

  fs::create_directories(dir_ / "plain");
  auto plain = Repository::open(dir_ / "plain", OpenOptions{});
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(plain.error().message(), dir_ / "plain" + " is not a blkvault repository (it has no config file)");

  init();
  {
    std::string text;
    std::ifstream in(repo_path() + "/config");
    text.assign(std::istreambuf_iterator<char>(in), {});
    const auto at = text.find("\"blkvault_repository\": 1");
    ASSERT_NE(at, std::string::npos) << text;
    text.replace(at, 24, "\"blkvault_repository\": 9");
    fs::permissions(repo_path() + "/config", fs::perms::owner_write, fs::perm_options::add);
    std::ofstream(repo_path() + "/config", std::ios::trunc) << text;
  }
  auto newer = Repository::open(repo_path(), OpenOptions{});
  ASSERT_FALSE(newer);
  EXPECT_EQ(newer.error().code(), ErrorCode::kUnsupported);
  EXPECT_EQ(newer.error().message(), "repository " + repo_path() +
                                         " has format version 9; this blkvault reads up to 1 (upgrade blkvault)");
}

TEST_F(RepositoryTest, RandomizedGenerationsOfSeveralDevicesRestoreByteIdentical) {
  const uint64_t seed = std::getenv("BLKVAULT_TEST_SEED") ? std::stoull(std::getenv("BLKVAULT_TEST_SEED")) : 20261125;
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init(256 << 10);  // small packs: many of them
  // Sizes that are not multiples of the chunk size, and one smaller than a chunk.
  SimDevice a{"/dev/sda", std::vector<uint8_t>(40 * kChunk + 1234)};
  SimDevice b{"/dev/sdb", std::vector<uint8_t>(17 * kChunk)};
  SimDevice c{"/dev/tiny", std::vector<uint8_t>(kChunk / 3)};
  for (auto* d : {&a, &b, &c}) d->mutate(rng, 12);

  std::map<GenerationId, std::map<std::string, std::vector<uint8_t>>> history;
  auto repo = open(true);
  ASSERT_TRUE(repo);
  for (int round = 0; round < 8; ++round) {
    std::vector<SimDevice*> devs = {&a, &b};
    if (round % 3 != 1) devs.push_back(&c);  // c is not in every generation
    auto info = backup(*repo, devs, round == 5);  // one forced full read along the way
    ASSERT_TRUE(info) << info.error().message();
    EXPECT_EQ(info->state, GenerationState::kComplete);
    for (auto* d : devs) history[info->id][d->name] = d->bytes;
    for (auto* d : {&a, &b, &c}) d->mutate(rng, 1 + static_cast<int>(rng() % 6));
  }
  for (const auto& [gen, devs] : history) {
    for (const auto& [name, bytes] : devs) {
      SimDevice d{name, {}};
      expect_restores(*repo, gen, d, bytes);
    }
  }
  // Reopened (read-only), the same.
  repo.reset();
  auto ro = open(false);
  ASSERT_TRUE(ro);
  auto gens = ro->generations();
  ASSERT_TRUE(gens);
  EXPECT_EQ(gens->size(), history.size());
  for (const auto& [gen, devs] : history) {
    for (const auto& [name, bytes] : devs) expect_restores(*ro, gen, SimDevice{name, {}}, bytes);
  }
  auto report = ro->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->clean());
  EXPECT_GT(report->packs, 1u);
}

TEST_F(RepositoryTest, IdenticalChunksAreStoredOnceAndZeroChunksNever) {
  init();
  std::vector<uint8_t> pattern(kChunk);
  std::mt19937_64 rng(7);
  for (auto& x : pattern) x = static_cast<uint8_t>(rng());
  SimDevice a{"a", std::vector<uint8_t>(8 * kChunk)};
  for (int i = 0; i < 8; i += 2) std::memcpy(a.bytes.data() + i * kChunk, pattern.data(), kChunk);  // 4 copies, 4 zero chunks
  SimDevice b{"b", a.bytes};
  auto repo = open(true);
  auto info = backup(*repo, {&a, &b}, true);
  ASSERT_TRUE(info) << info.error().message();
  auto stats = repo->stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->chunks, 1u);
  EXPECT_EQ(stats->chunk_raw_bytes, kChunk);
  EXPECT_EQ(info->devices[0].read_bytes, 8 * kChunk);
  EXPECT_EQ(info->devices[0].new_bytes + info->devices[1].new_bytes, kChunk);
  EXPECT_EQ(info->devices[0].chunks_changed, 4u);  // only non-zero chunks are recorded for a first backup
  auto img = repo->device_image(info->id, "a");
  ASSERT_TRUE(img);
  EXPECT_EQ(img->chunks.size(), 4u);
  expect_restores(*repo, info->id, a, a.bytes);
}

TEST_F(RepositoryTest, AGenerationCostsWhatItChangedNotTheDeviceSize) {
  init();
  SimDevice d{"big", std::vector<uint8_t>(300 * kChunk)};
  std::mt19937_64 rng(3);
  for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());
  auto repo = open(true);
  auto g1 = backup(*repo, {&d}, true);
  ASSERT_TRUE(g1);
  const auto size1 = fs::file_size(repo_path() + "/" + manifest_name(g1->id));
  d.bytes[5 * kChunk + 10] ^= 1;
  d.mark(5 * kChunk + 10, 1);
  d.bytes[299 * kChunk] ^= 1;
  d.mark(299 * kChunk, 1);
  auto g2 = backup(*repo, {&d}, false);
  ASSERT_TRUE(g2);
  EXPECT_EQ(g2->devices[0].chunks_changed, 2u);
  EXPECT_EQ(g2->devices[0].read_bytes, 2 * kChunk);
  EXPECT_EQ(*g2->devices[0].parent, g1->id);
  const auto size2 = fs::file_size(repo_path() + "/" + manifest_name(g2->id));
  EXPECT_LT(size2, size1 / 10) << "manifest of a 2-chunk change: " << size2 << " bytes";
  // A full re-read of unchanged data stores nothing new; it starts a new chain.
  auto g3 = backup(*repo, {&d}, true);
  ASSERT_TRUE(g3);
  EXPECT_EQ(g3->devices[0].chunks_changed, 300u);
  EXPECT_EQ(g3->devices[0].new_bytes, 0u);
  EXPECT_FALSE(g3->devices[0].parent);
  expect_restores(*repo, g1->id, d, [&] {
    auto v = d.bytes;
    v[5 * kChunk + 10] ^= 1;
    v[299 * kChunk] ^= 1;
    return v;
  }());
  expect_restores(*repo, g3->id, d, d.bytes);
}

TEST_F(RepositoryTest, AnAbandonedWriterLeavesEarlierGenerationsIntact) {
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
    // destroyed without commit
  }
  auto gens = repo->generations();
  ASSERT_TRUE(gens);
  ASSERT_EQ(gens->size(), 2u);
  EXPECT_EQ(gens->at(1).state, GenerationState::kFailed);
  EXPECT_EQ(gens->at(1).error, "the backup stopped before it committed");
  auto latest = repo->resolve("latest");
  ASSERT_TRUE(latest);
  EXPECT_EQ(*latest, g1->id);
  auto r = repo->resolve(std::to_string(gens->at(1).id));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "generation 2 is failed, not a committed backup");
  expect_restores(*repo, g1->id, d, before);
  // The baseline did not move: the next incremental builds on g1.
  auto last = repo->last_good("d");
  ASSERT_TRUE(last && *last);
  EXPECT_EQ((*last)->generation, g1->id);
  auto g3 = backup(*repo, {&d}, false);
  ASSERT_TRUE(g3);
  EXPECT_EQ(g3->id, 3u);
  expect_restores(*repo, g3->id, d, d.bytes);
  auto report = repo->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->clean());
}

TEST_F(RepositoryTest, PartialGenerationsKeepTheDevicesThatSucceeded) {
  init();
  SimDevice a{"a", std::vector<uint8_t>(4 * kChunk, 1)};
  SimDevice b{"b", std::vector<uint8_t>(4 * kChunk, 2)};
  auto repo = open(true);
  auto g1 = backup(*repo, {&a, &b}, true);
  ASSERT_TRUE(g1);
  auto attempt = [&](bool partial) -> Result<GenerationInfo> {
    BLKVAULT_TRY_ASSIGN(auto w, repo->begin_generation("h", "v"));
    BLKVAULT_TRY_ASSIGN(auto da, w->add_device("a", a.bytes.size(), true));
    BLKVAULT_TRY_ASSIGN(auto db, w->add_device("b", b.bytes.size(), true));
    std::vector<uint8_t> three(kChunk, 3);
    BLKVAULT_TRY(da->put(0, three));
    BLKVAULT_TRY(db->put(0, three));
    db->fail(Error(ErrorCode::kIo, "reading image: Input/output error"));
    return w->commit(partial);
  };
  auto strict = attempt(false);
  ASSERT_FALSE(strict);
  EXPECT_EQ(strict.error().message(), "device b failed: reading image: Input/output error");
  auto part = attempt(true);
  ASSERT_TRUE(part) << part.error().message();
  EXPECT_EQ(part->state, GenerationState::kPartial);
  auto img = repo->device_image(part->id, "b");
  ASSERT_FALSE(img);
  EXPECT_EQ(img.error().message(),
            "device b failed in generation 3 (reading image: Input/output error); nothing to restore");
  auto last_b = repo->last_good("b");
  ASSERT_TRUE(last_b && *last_b);
  EXPECT_EQ((*last_b)->generation, g1->id);
  auto last_a = repo->last_good("a");
  EXPECT_EQ((*last_a)->generation, part->id);
  auto expect_a = a.bytes;
  std::fill_n(expect_a.begin(), kChunk, 3);
  expect_restores(*repo, part->id, a, expect_a);
  auto none = repo->device_image(part->id, "c");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message(), "generation 3 has no device c (it has: a, b)");
}

TEST_F(RepositoryTest, TheIndexIsACacheRebuiltFromPacksAndManifests) {
  init(256 << 10);
  std::mt19937_64 rng(99);
  SimDevice a{"a", std::vector<uint8_t>(20 * kChunk + 99)};
  SimDevice b{"b", std::vector<uint8_t>(9 * kChunk)};
  a.mutate(rng, 10);
  b.mutate(rng, 10);
  std::map<GenerationId, std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> history;
  {
    auto repo = open(true);
    for (int i = 0; i < 4; ++i) {
      auto g = backup(*repo, {&a, &b}, false);
      ASSERT_TRUE(g);
      history[g->id] = {a.bytes, b.bytes};
      a.mutate(rng, 3);
      b.mutate(rng, 3);
    }
  }
  // Lost: the index disappears entirely.
  for (const char* s : {"", "-wal", "-shm"}) fs::remove(repo_path() + "/index.sqlite" + s);
  {
    auto repo = open(false);
    ASSERT_TRUE(repo);
    auto gens = repo->generations();
    ASSERT_EQ(gens->size(), 4u);
    for (const auto& [g, bytes] : history) {
      expect_restores(*repo, g, a, bytes.first);
      expect_restores(*repo, g, b, bytes.second);
    }
    auto last = repo->last_good("a");
    EXPECT_EQ((*last)->record.baseline, "baseline-of-a");
  }
  // Damaged: garbage where the index was.
  {
    std::ofstream(repo_path() + "/index.sqlite", std::ios::trunc) << std::string(8192, 'x');
    for (const char* s : {"-wal", "-shm"}) fs::remove(repo_path() + "/index.sqlite" + s);
    auto repo = open(true);
    ASSERT_TRUE(repo);
    for (const auto& [g, bytes] : history) expect_restores(*repo, g, a, bytes.first);
    // And the next backup continues the chain.
    auto g = backup(*repo, {&a, &b}, false);
    ASSERT_TRUE(g);
    EXPECT_EQ(g->id, 5u);
    expect_restores(*repo, g->id, b, b.bytes);
    ASSERT_TRUE(repo->rebuild_index());
    expect_restores(*repo, g->id, a, a.bytes);
  }
}

TEST_F(RepositoryTest, AManifestPublishedBeforeTheIndexCommitIsReplayed) {
  init();
  std::mt19937_64 rng(5);
  SimDevice d{"d", std::vector<uint8_t>(12 * kChunk)};
  d.mutate(rng, 8);
  {
    auto repo = open(true);
    ASSERT_TRUE(backup(*repo, {&d}, true));
  }
  // The index as it was before the next commit (the crash window: the manifest
  // and packs are durable, the index transaction never happened).
  const std::string saved = dir_ / "saved-index";
  fs::copy_file(repo_path() + "/index.sqlite", saved);
  ASSERT_FALSE(fs::exists(repo_path() + "/index.sqlite-wal") && fs::file_size(repo_path() + "/index.sqlite-wal") > 0);
  const auto before = d.bytes;
  d.mutate(rng, 4);
  GenerationId g2 = 0;
  {
    auto repo = open(true);
    auto g = backup(*repo, {&d}, false);
    ASSERT_TRUE(g);
    g2 = g->id;
  }
  for (const char* s : {"-wal", "-shm"}) fs::remove(repo_path() + "/index.sqlite" + s);
  fs::copy_file(saved, repo_path() + "/index.sqlite", fs::copy_options::overwrite_existing);
  auto repo = open(false);
  auto gens = repo->generations();
  ASSERT_EQ(gens->size(), 2u);
  expect_restores(*repo, 1, d, before);
  expect_restores(*repo, g2, d, d.bytes);
}

TEST_F(RepositoryTest, VerifyFindsAFlippedByteAndNamesWhatItSpoils) {
  init();
  SimDevice d{"/dev/vdb", std::vector<uint8_t>(6 * kChunk)};
  std::mt19937_64 rng(17);
  for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());
  auto repo = open(true);
  auto g1 = backup(*repo, {&d}, true);
  ASSERT_TRUE(g1);
  d.bytes[kChunk * 5] ^= 0xff;
  d.mark(kChunk * 5, 1);
  auto g2 = backup(*repo, {&d}, false);
  ASSERT_TRUE(g2);
  auto img = repo->device_image(g1->id, "/dev/vdb");
  ASSERT_TRUE(img);
  const ChunkRef victim = img->chunks.at(2);  // shared by both generations
  const std::string pack = repo_path() + "/" + img->packs[victim.pack];
  {
    fs::permissions(pack, fs::perms::owner_write, fs::perm_options::add);
    std::fstream f(pack, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(victim.offset + BlobHeader::kSize + 100));
    char c;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x20);
    f.seekp(static_cast<std::streamoff>(victim.offset + BlobHeader::kSize + 100));
    f.write(&c, 1);
  }
  auto meta = repo->verify(VerifyOptions{}, nullptr, {});
  ASSERT_TRUE(meta);
  EXPECT_TRUE(meta->clean()) << "metadata alone cannot see a flipped data byte";
  auto full = repo->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(full);
  ASSERT_EQ(full->damage.size(), 1u);
  EXPECT_TRUE(full->problems.empty());
  const auto& dmg = full->damage[0];
  EXPECT_NE(dmg.what.find(to_hex(victim.id)), std::string::npos) << dmg.what;
  ASSERT_EQ(dmg.affected.size(), 2u);
  EXPECT_EQ(dmg.affected[0].generation, g1->id);
  EXPECT_EQ(dmg.affected[1].generation, g2->id);
  for (const auto& r : dmg.affected) {
    EXPECT_EQ(r.device, "/dev/vdb");
    EXPECT_EQ(r.offset_bytes, 2 * kChunk);
    EXPECT_EQ(r.length_bytes, kChunk);
  }
  // Restoring a generation that needs the chunk fails loudly; never wrong bytes.
  MemSink sink(img->size_bytes);
  auto st = repo->restore(*img, sink, 2, nullptr, {});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(st.error().message().find("reading offset 131072 of /dev/vdb in generation 1"), std::string::npos)
      << st.error().message();
  // A generation-scoped verify of g2 sees it too.
  auto only = repo->verify(VerifyOptions{.data = true, .generation = g2->id}, nullptr, {});
  ASSERT_TRUE(only);
  ASSERT_EQ(only->damage.size(), 1u);
  ASSERT_EQ(only->damage[0].affected.size(), 1u);
  EXPECT_EQ(only->damage[0].affected[0].generation, g2->id);
}

TEST_F(RepositoryTest, VerifyReportsAMissingPackAndAMissingManifest) {
  init();
  SimDevice d{"d", std::vector<uint8_t>(3 * kChunk)};
  std::mt19937_64 rng(1);
  for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());
  auto repo = open(true);
  auto g1 = backup(*repo, {&d}, true);
  ASSERT_TRUE(g1);
  auto img = repo->device_image(g1->id, "d");
  fs::remove(repo_path() + "/" + img->packs.at(0));
  fs::remove(repo_path() + "/" + manifest_name(g1->id));
  auto report = repo->verify(VerifyOptions{}, nullptr, {});
  ASSERT_TRUE(report);
  EXPECT_EQ(report->damage.size(), 3u);
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_NE(report->problems[0].find("generation 1: "), std::string::npos) << report->problems[0];
  EXPECT_NE(report->damage[0].what.find("pack " + img->packs[0]), std::string::npos) << report->damage[0].what;
}

TEST_F(RepositoryTest, ASecondWriterIsRefusedWhileReadersProceed) {
  init();
  auto writer = open(true);
  ASSERT_TRUE(writer);
  OpenOptions o;
  o.write = true;
  auto second = Repository::open(repo_path(), o);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kLocked);
  auto reader = open(false);
  ASSERT_TRUE(reader);
  auto gens = reader->generations();
  ASSERT_TRUE(gens);
  EXPECT_TRUE(gens->empty());
}

TEST_F(RepositoryTest, AReaderNeverTakesTheLockUnlessTheIndexNeedsIt) {
  init();
  SimDevice d{"d", std::vector<uint8_t>(2 * kChunk, 7)};
  {
    auto w = open(true);
    ASSERT_TRUE(backup(*w, {&d}, true));
  }
  // A writer holds the lock: an up-to-date index is read without it...
  auto writer = open(true);
  auto reader = open(false);
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->generations()->size(), 1u);
  reader.reset();
  // ...and a reader that opened meanwhile did not make a writer fail.
  writer.reset();
  {
    auto r = open(false);
    OpenOptions o;
    o.write = true;
    auto w = Repository::open(repo_path(), o);
    ASSERT_TRUE(w) << w.error().message();
  }
  // A missing index with the lock held elsewhere: say so, do not show an empty repository.
  writer = open(true);
  for (const char* s : {"", "-wal", "-shm"}) fs::remove(repo_path() + "/index.sqlite" + s);
  auto missing = Repository::open(repo_path(), OpenOptions{});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kLocked);
  EXPECT_EQ(missing.error().message().rfind("the index of " + repo_path() + " is missing and another process holds the lock (repository " +
                                                repo_path() + " is locked by pid ",
                                            0),
            0u)
      << missing.error().message();
}

TEST_F(RepositoryTest, ResolveRejectsMalformedAndUnknownIds) {
  init();
  auto repo = open(false);
  auto none = repo->resolve("latest");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(none.error().message(), "the repository has no generations yet");
  auto bad = repo->resolve("12abc");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message(), "'12abc' is not a generation id (a number, or 'latest')");
  auto unknown = repo->resolve("42");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message(), "generation 42 does not exist");
}

CbtAudit sample_audit(GenerationId against) {
  CbtAudit a;
  a.seed = 0xfedcba9876543210ull;  // above 2^53: must survive as text
  a.percent = 0.5;
  a.against = against;
  a.unchanged_chunks = 19;
  a.sampled_chunks = 16;
  a.sampled_bytes = 16 * kChunk;
  a.missed = {{kChunk, 2 * kChunk}, {7 * kChunk, kChunk}};
  return a;
}

TEST_F(RepositoryTest, ACbtAuditIsRecordedInManifestAndIndexAndSurvivesARebuild) {
  init();
  std::mt19937_64 rng(11);
  SimDevice a{"a", std::vector<uint8_t>(20 * kChunk)};
  a.mutate(rng, 10);
  auto repo = open(true);
  ASSERT_TRUE(repo);
  auto g1 = backup(*repo, {&a}, true);
  ASSERT_TRUE(g1) << g1.error().message();
  // The audit's lookup: the chunk ids of some indexes, zeros as nullopt.
  auto img = repo->device_image(g1->id, "a");
  ASSERT_TRUE(img);
  std::vector<uint64_t> want = {0, 3, 4, 19};
  auto ids = repo->chunk_ids(g1->id, "a", want);
  ASSERT_TRUE(ids) << ids.error().message();
  for (size_t i = 0; i < want.size(); ++i) {
    std::optional<ChunkId> expect;
    for (const auto& r : img->chunks) {
      if (r.chunk_index == want[i]) expect = r.id;
    }
    EXPECT_EQ((*ids)[i], expect) << "chunk " << want[i];
  }
  EXPECT_FALSE(repo->chunk_ids(g1->id, "nope", want));

  auto w = repo->begin_generation("h", "t");
  ASSERT_TRUE(w);
  auto dw = (*w)->add_device("a", a.bytes.size(), false);
  ASSERT_TRUE(dw);
  for (uint64_t c = 0; c < 20; ++c) ASSERT_TRUE((*dw)->put(c, std::span(a.bytes).subspan(c * kChunk, kChunk)));
  (*dw)->set_mode("full", "the CBT audit found a write the CBT map missed", a.bytes.size());
  (*dw)->set_cbt_audit(sample_audit(g1->id));
  auto g2 = (*w)->commit(false);
  ASSERT_TRUE(g2) << g2.error().message();
  ASSERT_TRUE(g2->devices[0].cbt_audit);
  EXPECT_EQ(*g2->devices[0].cbt_audit, sample_audit(g1->id));

  auto check = [&](Repository& r, const std::string& when) {
    SCOPED_TRACE(when);
    auto gens = r.generations();
    ASSERT_TRUE(gens) << gens.error().message();
    ASSERT_EQ(gens->size(), 2u);
    EXPECT_FALSE((*gens)[0].devices[0].cbt_audit);
    ASSERT_TRUE((*gens)[1].devices[0].cbt_audit);
    EXPECT_EQ(*(*gens)[1].devices[0].cbt_audit, sample_audit(g1->id));
    auto report = r.verify({}, nullptr, {});
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_TRUE(report->clean()) << (report->problems.empty() ? "" : report->problems.front());
  };
  check(*repo, "as committed");
  repo.reset();
  for (const char* s : {"", "-wal", "-shm"}) fs::remove(repo_path() + "/index.sqlite" + s);
  auto rebuilt = open(false);
  ASSERT_TRUE(rebuilt);
  check(*rebuilt, "index rebuilt from the manifests");
}

// Counts the ranged reads of packs.
class RangeCountingStorage final : public ForwardingStorage {
 public:
  RangeCountingStorage(std::unique_ptr<Storage> inner, std::atomic<int>& reads)
      : ForwardingStorage(std::move(inner)), reads_(reads) {}
  Result<std::vector<uint8_t>> get_range(std::string_view n, uint64_t o, uint64_t l) override {
    if (n.substr(0, 6) == "packs/") ++reads_;
    return ForwardingStorage::get_range(n, o, l);
  }

 private:
  std::atomic<int>& reads_;
};

TEST_F(RepositoryTest, ARestoreReadsChunksStoredBackToBackWithOneRequestPerRun) {
  init(8 << 20);  // one pack
  std::mt19937_64 rng(31);
  SimDevice a{"a", std::vector<uint8_t>(40 * kChunk)};
  for (auto& x : a.bytes) x = static_cast<uint8_t>(rng());  // incompressible: 2.5 MiB stored
  {
    auto repo = open(true);
    ASSERT_TRUE(backup(*repo, {&a}, true, /*threads=*/1));  // chunks in the pack in device order
  }
  std::atomic<int> reads{0};
  auto open_counting = [&] {
    OpenOptions o;
    o.cache_dir = cache_dir();
    o.wrap_storage = [&](std::unique_ptr<Storage> s) {
      return std::unique_ptr<Storage>(std::make_unique<RangeCountingStorage>(std::move(s), reads));
    };
    auto r = Repository::open(repo_path(), o);
    EXPECT_TRUE(r) << r.error().message();
    return std::move(*r);
  };
  {
    auto repo = open_counting();
    reads = 0;
    expect_restores(*repo, 1, a, a.bytes);
    EXPECT_EQ(reads.load(), 2);  // runs of at most 32 chunks: 32 + 8
  }
  // A damaged chunk inside a run is reported as a single read reports it:
  // the chunks before it come from the run, it and the rest one by one.
  auto repo = open_counting();
  auto img = repo->device_image(1, "a");
  ASSERT_TRUE(img);
  const ChunkRef victim = img->chunks[10];
  {
    std::fstream f(repo_path() + "/" + img->packs[victim.pack], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(victim.offset + victim.length - 1));
    f.put('\x5a' ^ static_cast<char>(f.peek()));
  }
  MemSink sink(img->size_bytes);
  ChunkCodec codec(repo->config().compression_level, repo->keys());
  auto single = repo->read_chunk(*img, victim, codec);
  ASSERT_FALSE(single);
  reads = 0;
  auto st = repo->restore(*img, sink, 1, nullptr, {});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), single.error().message());
  EXPECT_EQ(reads.load(), 2);  // the run, then the victim alone (the first error stops the restore)
  EXPECT_TRUE(std::equal(a.bytes.begin(), a.bytes.begin() + 10 * kChunk, sink.data().begin()));
}

// Turns a current index into what blkvault wrote at schema `version` (1: no
// cbt_audit column; 1 and 2: the chunk_map_by_chunk index, and current rows
// with gen_to = 2^63-1).
void downgrade_index(const std::string& index, int version) {
  auto db = sql::Db::open(index);
  ASSERT_TRUE(db);
  if (version == 1) {
    ASSERT_TRUE(db->exec("ALTER TABLE generation_devices DROP COLUMN cbt_audit"));
  }
  ASSERT_TRUE(db->exec("CREATE INDEX chunk_map_by_chunk ON chunk_map(chunk)"));
  ASSERT_TRUE(db->exec("UPDATE chunk_map SET gen_to = 9223372036854775807 WHERE gen_to = 2147483647"));
  ASSERT_TRUE(db->exec("INSERT INTO generations(id, state, started_ms, finished_ms, host, tool_version, error) "
                       "VALUES (99, 'failed', 1, 2, 'h', 'old', 'only in the index')"));
  ASSERT_TRUE(db->exec("PRAGMA user_version=" + std::to_string(version)));
}

class IndexMigrationTest : public RepositoryTest, public ::testing::WithParamInterface<int> {};

TEST_P(IndexMigrationTest, AnOlderIndexIsMigratedInPlace) {
  const int version = GetParam();
  init();
  std::mt19937_64 rng(12);
  SimDevice a{"a", std::vector<uint8_t>(5 * kChunk)};
  a.mutate(rng, 5);
  {
    auto repo = open(true);
    ASSERT_TRUE(backup(*repo, {&a}, true));
  }
  const std::vector<uint8_t> first = a.bytes;
  a.mutate(rng, 2);
  {
    auto repo = open(true);
    ASSERT_TRUE(backup(*repo, {&a}, false));
  }
  downgrade_index(repo_path() + "/index.sqlite", version);
  {
    auto repo = open(false);
    ASSERT_TRUE(repo);
    auto gens = repo->generations();
    ASSERT_TRUE(gens) << gens.error().message();
    ASSERT_EQ(gens->size(), 3u);  // migrated, not rebuilt: the failed run's record is still there
    EXPECT_EQ((*gens)[2].error, "only in the index");
    EXPECT_FALSE((*gens)[0].devices[0].cbt_audit);
    expect_restores(*repo, 1, a, first);
    expect_restores(*repo, 2, a, a.bytes);
  }
  auto db = sql::Db::open(repo_path() + "/index.sqlite");
  ASSERT_TRUE(db);
  EXPECT_EQ(db->query_int("PRAGMA user_version")->value_or(0), 3);
  EXPECT_EQ(db->query_int("SELECT count(*) FROM sqlite_master WHERE name = 'chunk_map_by_chunk'")->value_or(-1), 0);
  EXPECT_EQ(db->query_int("SELECT count(*) FROM chunk_map WHERE gen_to > 2147483647")->value_or(-1), 0);
  EXPECT_GT(db->query_int("SELECT count(*) FROM chunk_map WHERE gen_to = 2147483647")->value_or(0), 0);
  // The migrated index takes the next backup and gc as a new one would.
  a.mutate(rng, 1);
  auto repo = open(true);
  auto next = backup(*repo, {&a}, false);
  ASSERT_TRUE(next) << next.error().message();
  EXPECT_EQ(next->id, 100u);  // after the failed run only the index knew of
  expect_restores(*repo, next->id, a, a.bytes);
  auto report = repo->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->clean());
}

INSTANTIATE_TEST_SUITE_P(FromVersion, IndexMigrationTest, ::testing::Values(1, 2));

TEST(ManifestTest, CarriesACbtAuditAndReadsManifestsWithoutOne) {
  Manifest m;
  m.repository_id = "abc";
  m.chunk_size = kChunk;
  m.generation.id = 8;
  m.generation.state = GenerationState::kComplete;
  DeviceRecord d;
  d.name = "/dev/sda";
  d.size_bytes = 20 * kChunk;
  m.generation.devices.push_back(d);  // no audit: the field is left out, as before it existed
  d.name = "/dev/sdb";
  d.cbt_audit = sample_audit(7);
  m.generation.devices.push_back(d);
  m.deltas = {{}, {}};
  const auto bytes = m.encode();
  const std::string text(bytes.begin(), bytes.end());
  EXPECT_EQ(text.find("cbt_audit"), text.rfind("cbt_audit"));  // once: only /dev/sdb has one
  EXPECT_NE(text.find("\"seed\":\"fedcba9876543210\""), std::string::npos) << text;
  auto back = Manifest::decode(bytes, "m");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_FALSE(back->generation.devices[0].cbt_audit);
  ASSERT_TRUE(back->generation.devices[1].cbt_audit);
  EXPECT_EQ(*back->generation.devices[1].cbt_audit, sample_audit(7));
  auto bad = decode_cbt_audit("{\"seed\":\"12\"}", "x");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kCorrupt);
}

TEST(ManifestTest, AGenerationIdPastTheIndexsLimitIsDamage) {
  Manifest m;
  m.repository_id = "abc";
  m.chunk_size = kChunk;
  m.generation.state = GenerationState::kComplete;
  m.generation.id = kMaxGenerationId;
  ASSERT_TRUE(Manifest::decode(m.encode(), "m"));
  m.generation.id = kMaxGenerationId + 1;
  auto bad = Manifest::decode(m.encode(), "m");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(bad.error().message().find("generation id 2147483647 out of range"), std::string::npos)
      << bad.error().message();
}

TEST_F(RepositoryTest, ABackupPastTheLastGenerationIdIsRefused) {
  init();
  {  // a manifest name (its content does not matter here) at the last id
    fs::create_directories(repo_path() + "/manifests");
    std::ofstream(repo_path() + "/" + manifest_name(kMaxGenerationId)) << "x";
  }
  auto repo = open(true);
  ASSERT_TRUE(repo);
  auto w = repo->begin_generation("h", "v");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::kUnsupported);
  EXPECT_EQ(w.error().message(),
            "the repository has used every generation id (up to 2147483646): start a new repository");
}

TEST(ManifestTest, RoundTripsAndDetectsDamage) {
  Manifest m;
  m.repository_id = "abc";
  m.chunk_size = kChunk;
  m.generation.id = 7;
  m.generation.state = GenerationState::kPartial;
  m.generation.host = "h";
  m.generation.tool_version = "v";
  DeviceRecord d;
  d.name = "/dev/sda";
  d.size_bytes = 1000;
  d.parent = 3;
  d.baseline = "cbt1 x";
  m.generation.devices.push_back(d);
  d.name = "/dev/sdb";
  d.complete = false;
  d.error = "boom";
  d.parent.reset();
  m.generation.devices.push_back(d);
  ChunkId id{};
  id[0] = 9;
  m.deltas = {{MapEntry{0, id}, MapEntry{5, std::nullopt}}, {}};
  const auto bytes = m.encode();
  auto back = Manifest::decode(bytes, "m");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->deltas, m.deltas);
  EXPECT_EQ(back->generation.devices[1].error, "boom");
  EXPECT_EQ(*back->generation.devices[0].parent, 3u);
  EXPECT_FALSE(back->generation.devices[1].parent);
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto copy = bytes;
    copy[i] ^= 0x01;
    auto r = Manifest::decode(copy, "m");
    ASSERT_FALSE(r) << "flip at " << i;
  }
  EXPECT_EQ(manifest_name(42), "manifests/00000000000000000042");
  EXPECT_EQ(parse_manifest_name("manifests/00000000000000000042"), 42u);
  EXPECT_FALSE(parse_manifest_name("manifests/00000000000000000042.tmp-1-2"));
}

}  // namespace
}  // namespace blkvault::repo
