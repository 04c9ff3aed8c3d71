// Under load (issue 8):
//   * readers — each its own Repository, as separate list/verify/restore
//     processes would be — run while a writer commits generation after
//     generation, and always see a consistent set: every committed generation
//     they list has the bytes it was committed with, verify is clean;
//   * a repository with thousands of generations opens and lists fast (the
//     figures are printed; docs/RELIABILITY.md quotes them).
// Also run under ThreadSanitizer by scripts/test (build/tsan).
#include <chrono>
#include <iostream>
#include <map>

#include "repo_support.h"

namespace blkvault::repo {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::stoull(v) : fallback;
}

class LoadTest : public RepositoryTest {};

TEST_F(LoadTest, ReadersDuringCommitsAlwaysSeeAConsistentSetOfGenerations) {
  init(256 << 10);
  SimDevice a{"/dev/la", std::vector<uint8_t>(16 * kChunk)};
  SimDevice b{"/dev/lb", std::vector<uint8_t>(9 * kChunk)};
  std::mt19937_64 rng(99);
  for (auto* d : {&a, &b}) {
    for (auto& x : d->bytes) x = static_cast<uint8_t>(rng());
  }
  const int rounds = static_cast<int>(env_or("BLKVAULT_LOAD_ROUNDS", 12));

  // What each generation must restore to, recorded before it commits.
  std::mutex mu;
  std::map<GenerationId, std::map<std::string, std::vector<uint8_t>>> expected;
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, restores{0}, verifies{0}, lagging{0};

  auto reader = [&](int which) {
    std::mt19937_64 r(1000 + static_cast<uint64_t>(which));
    while (!done.load()) {
      auto opened = Repository::open(repo_path(), OpenOptions{});
      if (!opened) {
        // The index lags a just-published manifest while the writer holds the lock.
        ASSERT_EQ(opened.error().code(), ErrorCode::kLocked) << opened.error().message();
        ++lagging;
        continue;
      }
      auto& repo = **opened;
      auto gens = repo.generations();
      ASSERT_TRUE(gens) << gens.error().message();
      ++reads;
      std::vector<GenerationId> committed;
      for (const auto& g : *gens) {
        if (g.state == GenerationState::kComplete) committed.push_back(g.id);
        ASSERT_NE(g.state, GenerationState::kPartial);
      }
      for (size_t i = 1; i < committed.size(); ++i) ASSERT_LT(committed[i - 1], committed[i]);
      if (committed.empty()) continue;
      const GenerationId g = committed[r() % committed.size()];
      std::map<std::string, std::vector<uint8_t>> want;
      {
        std::lock_guard lk(mu);
        ASSERT_TRUE(expected.count(g)) << "generation " << g << " is listed but was never committed";
        want = expected[g];
      }
      for (const auto& [dev, bytes] : want) {
        auto img = repo.device_image(g, dev);
        ASSERT_TRUE(img) << img.error().message();
        MemSink sink(img->size_bytes);
        auto st = repo.restore(*img, sink, 2, nullptr, {});
        ASSERT_TRUE(st) << st.error().message();
        ASSERT_TRUE(sink.data() == bytes) << dev << " of generation " << g << " differs";
        ++restores;
      }
      if (which == 0) {
        auto v = repo.verify(VerifyOptions{.data = (reads % 4 == 0)}, nullptr, {});
        ASSERT_TRUE(v) << v.error().message();
        ASSERT_TRUE(v->clean()) << (v->problems.empty() ? v->damage.at(0).what : v->problems.at(0));
        ++verifies;
      }
    }
  };
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) readers.emplace_back(reader, i);

  {
    auto repo = open(true);
    ASSERT_TRUE(repo);
    for (int round = 0; round < rounds; ++round) {
      if (round > 0) {
        a.mutate(rng, 2);
        b.mutate(rng, 1);
      }
      // backup() commits inside; record the bytes under the id it will get.
      auto peek = repo->generations();
      ASSERT_TRUE(peek);
      const GenerationId next = peek->empty() ? 1 : peek->back().id + 1;
      {
        std::lock_guard lk(mu);
        expected[next] = {{a.name, a.bytes}, {b.name, b.bytes}};
      }
      auto g = backup(*repo, {&a, &b}, round == 0);
      ASSERT_TRUE(g) << g.error().message();
      ASSERT_EQ(g->id, next);
    }
  }
  // Let the readers see the final state too.
  const int seen = reads.load();
  const auto until = Clock::now() + std::chrono::seconds(20);
  while (reads.load() < seen + 2 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  done = true;
  for (auto& t : readers) t.join();
  std::cout << "readers during " << rounds << " commits: " << reads << " listings, " << restores
            << " device restores, " << verifies << " verifies, " << lagging << " opens refused while the index lagged\n";
  EXPECT_GT(restores.load(), 0);
}

TEST_F(LoadTest, ThousandsOfGenerationsOpenAndListFast) {
  const uint64_t count = env_or("BLKVAULT_LOAD_GENERATIONS", 2000);
  init(1 << 20);
  SimDevice d{"/dev/many", std::vector<uint8_t>(16 * kChunk)};
  SimDevice e{"/dev/other", std::vector<uint8_t>(4 * kChunk)};
  std::mt19937_64 rng(7);
  for (auto* x : {&d, &e}) {
    for (auto& y : x->bytes) y = static_cast<uint8_t>(rng());
  }
  const auto t0 = Clock::now();
  {
    auto repo = open(true);
    ASSERT_TRUE(repo);
    for (uint64_t i = 0; i < count; ++i) {
      if (i > 0) {
        const uint64_t c = rng() % 16;
        d.bytes[c * kChunk + rng() % kChunk] ^= 0x5a;
        d.mark(c * kChunk, 1);
      }
      auto g = i % 2 == 0 ? backup(*repo, {&d, &e}, i == 0, 1) : backup(*repo, {&d}, false, 1);
      ASSERT_TRUE(g) << g.error().message();
    }
  }
  const double build_ms = ms_since(t0);

  auto t1 = Clock::now();
  auto repo = Repository::open(repo_path(), OpenOptions{});
  ASSERT_TRUE(repo) << repo.error().message();
  const double open_ms = ms_since(t1);
  t1 = Clock::now();
  auto gens = (*repo)->generations();
  ASSERT_TRUE(gens);
  const double list_ms = ms_since(t1);
  ASSERT_EQ(gens->size(), count);
  t1 = Clock::now();
  auto last = (*repo)->last_good("/dev/other");
  ASSERT_TRUE(last && *last);
  auto latest = (*repo)->resolve("latest");
  ASSERT_TRUE(latest);
  auto img = (*repo)->device_image(*latest, "/dev/many");
  ASSERT_TRUE(img);
  const double lookup_ms = ms_since(t1);
  MemSink sink(img->size_bytes);
  ASSERT_TRUE((*repo)->restore(*img, sink, 2, nullptr, {}));
  ASSERT_TRUE(sink.data() == d.bytes);
  std::cout << count << " generations: built in " << static_cast<int>(build_ms) << " ms; open " << open_ms
            << " ms, list " << list_ms << " ms, last good + latest image " << lookup_ms << " ms\n";
  // Generous bounds (sanitizer builds, a shared machine): what matters is no
  // cost that grows with the square of the generation count.
  EXPECT_LT(open_ms, 2000.0);
  EXPECT_LT(list_ms, 2000.0);
  EXPECT_LT(lookup_ms, 2000.0);
}

}  // namespace
}  // namespace blkvault::repo
