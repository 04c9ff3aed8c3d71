// Power loss below the storage seam: the local backend and the SQLite index
// write through a FaultEnv (tests/fault_env.h) that cuts the power at a seeded
// call — or fails that one call — then reverts the disk to what was fsynced
// (file data up to its last fsync, directory entries up to their directory's
// last fsync) and "reboots": the repository is reopened with the real file
// system and must have lost nothing it acknowledged (docs/RELIABILITY.md).
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <set>

#include "fault_env.h"
#include "repo/sqlite.h"
#include "repo_support.h"

namespace blkvault::repo {
namespace {
namespace fs = std::filesystem;

using Images = std::map<std::string, std::vector<uint8_t>>;  // device -> bytes

uint64_t seed_from_env_or_draw() {
  if (const char* s = std::getenv("BLKVAULT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

// What the workload was told, i.e. what must survive.
struct Acknowledged {
  std::map<GenerationId, Images> committed;  // commit() returned the generation
  std::set<GenerationId> pruned;             // forget() returned success
  std::map<GenerationId, Images> intended;   // every generation begun, with what it was given
  std::set<GenerationId> uncertain_gens;      // backups begun, not acknowledged: each there fully, or absent
  std::set<GenerationId> uncertain_prune;     // the prune the fault hit: each either way
};

// The steps of one workload: backups of two devices over several
// generations, a full read, a prune and a gc, then another backup. The
// devices' contents at each step are fixed by the step, whatever failed before.
struct Step {
  enum Kind { kBackup, kPrune, kGc } kind;
  std::vector<std::string> devices;  // kBackup
  bool full = false;
};

const std::vector<Step>& workload() {
  static const std::vector<Step> steps = {
      {Step::kBackup, {"a", "b"}},       {Step::kBackup, {"a"}},   {Step::kBackup, {"a", "b"}, true},
      {Step::kPrune, {}},                {Step::kGc, {}},          {Step::kBackup, {"a", "b"}},
  };
  return steps;
}

class PowerLossTest : public RepositoryTest {
 protected:
  static constexpr uint64_t kPackSize = 128 << 10;

  // The contents of the devices at step `step` (-1: the template's generation 1).
  Images contents(int step) {
    Images out;
    std::mt19937_64 rng(77);
    SimDevice a{"a", std::vector<uint8_t>(10 * kChunk + 100)};
    SimDevice b{"b", std::vector<uint8_t>(6 * kChunk)};
    a.mutate(rng, 12);
    b.mutate(rng, 8);
    for (int s = 0; s <= step; ++s) {
      a.mutate(rng, 3);
      if (s % 2 == 0) b.mutate(rng, 2);
    }
    out["a"] = a.bytes;
    out["b"] = b.bytes;
    return out;
  }

  // A repository with generation 1 of both devices, written with the real
  // file system; every run starts from a copy of it.
  void make_template() {
    template_ = dir_ / "template";
    InitOptions o;
    o.chunk_size = kChunk;
    o.pack_size = kPackSize;
    ASSERT_TRUE(init_repository(template_, o));
    OpenOptions oo;
    oo.write = true;
    auto repo = Repository::open(template_, oo);
    ASSERT_TRUE(repo) << repo.error().message();
    Acknowledged ack;
    auto g = backup_images(**repo, contents(-1), {"a", "b"}, false, ack);
    ASSERT_TRUE(g) << g.error().message();
    ASSERT_EQ(*g, 1u);
    template_ack_ = ack;
  }

  std::string fresh_copy(const std::string& name) {
    const std::string path = dir_ / name;
    std::error_code ec;
    fs::remove_all(path, ec);
    fs::copy(template_, path, fs::copy_options::recursive, ec);
    EXPECT_FALSE(ec) << ec.message();
    return path;
  }

  // Backs up `devices` of `images`: incremental against each device's last
  // good generation (the chunks that differ from what that generation holds),
  // full when `full` or there is none. One thread, so the call count is the
  // same from run to run.
  Result<GenerationId> backup_images(Repository& repo, const Images& images, const std::vector<std::string>& devices,
                                     bool full, Acknowledged& ack) {
    BLKVAULT_TRY_ASSIGN(auto w, repo.begin_generation("testhost", "test"));
    const GenerationId id = w->id();
    ack.uncertain_gens.insert(id);
    for (const auto& name : devices) ack.intended[id][name] = images.at(name);
    for (const auto& name : devices) {
      const auto& bytes = images.at(name);
      BLKVAULT_TRY_ASSIGN(auto last, repo.last_good(name));
      const Images* parent = nullptr;
      if (!full && last) {
        auto it = ack.intended.find(last->generation);
        if (it != ack.intended.end() && it->second.count(name) != 0) parent = &it->second;
      }
      BLKVAULT_TRY_ASSIGN(DeviceWriter * dw, w->add_device(name, bytes.size(), parent != nullptr));
      const uint64_t count = (bytes.size() + kChunk - 1) / kChunk;
      for (uint64_t c = 0; c < count; ++c) {
        const uint64_t off = c * kChunk, n = std::min<uint64_t>(kChunk, bytes.size() - off);
        if (parent != nullptr) {
          const auto& old = parent->at(name);
          if (old.size() == bytes.size() && std::equal(bytes.begin() + off, bytes.begin() + off + n, old.begin() + off)) {
            continue;
          }
        }
        BLKVAULT_TRY(dw->put(c, std::span(bytes).subspan(off, n)));
      }
      dw->set_mode(parent != nullptr ? "incremental" : "full", parent != nullptr ? "" : "test", bytes.size());
      dw->set_baseline("baseline-of-" + name);
    }
    BLKVAULT_TRY_ASSIGN(auto info, w->commit(false));
    ack.uncertain_gens.erase(id);
    ack.committed[info.id] = ack.intended[id];
    return info.id;
  }

  // Runs the workload on `path` through `env` until a step fails. In
  // power-loss mode the first failure ends it (the process died); in fail
  // mode the failed step is the uncertain one and the rest go on. Returns a
  // problem, or "" when the run behaved.
  std::string run_workload(const std::string& path, Env& env, bool power, Acknowledged& ack) {
    bool failed_once = false;
    for (size_t s = 0; s < workload().size(); ++s) {
      const Step& step = workload()[s];
      auto st = [&]() -> Status {
        OpenOptions oo;
        oo.write = true;
        oo.env = &env;
        BLKVAULT_TRY_ASSIGN(auto repo, Repository::open(path, oo));
        switch (step.kind) {
          case Step::kBackup: {
            BLKVAULT_TRY(backup_images(*repo, contents(static_cast<int>(s)), step.devices, step.full, ack));
            return {};
          }
          case Step::kPrune: {
            // The template's generation and the first one of the run, when acknowledged.
            std::vector<GenerationId> ids = {1};
            if (ack.committed.count(2) != 0) ids.push_back(2);
            ack.uncertain_prune.insert(ids.begin(), ids.end());
            BLKVAULT_TRY(repo->forget(ids));
            for (GenerationId g : ids) {
              ack.pruned.insert(g);
              ack.committed.erase(g);
            }
            ack.uncertain_prune.clear();
            return {};
          }
          case Step::kGc:
            return repo->gc(GcOptions{}, nullptr).map([](const GcReport&) {});
        }
        return {};
      }();
      if (st) continue;
      if (power) return "";
      if (failed_once) return "step " + std::to_string(s) + " failed after the injected failure: " + st.error().message();
      failed_once = true;
    }
    return "";
  }

  struct Outcome {
    std::vector<std::string> problems;  // broken promises
    bool detected = true;               // every problem was reported by open, verify or restore (not wrong bytes)
  };

  // "Reboots": reopens through `env` (null: the real file system; the crash
  // points use a fresh FaultEnv with nothing armed, which is the same without
  // the cost of real fsyncs) and checks every promise.
  Outcome check(const std::string& path, const Acknowledged& ack, int next_step, Env* env) {
    Outcome out;
    auto problem = [&](std::string what, bool reported) {
      out.problems.push_back(std::move(what));
      if (!reported) out.detected = false;
    };
    OpenOptions oo;
    oo.write = true;
    oo.env = env;
    auto opened = Repository::open(path, oo);
    if (!opened) {
      problem("open: " + opened.error().message(), true);
      return out;
    }
    Repository& repo = **opened;
    auto report = repo.verify(VerifyOptions{.data = true}, nullptr, {});
    if (!report) {
      problem("verify: " + report.error().message(), true);
    } else if (!report->clean()) {
      problem("verify --data: " + (report->problems.empty() ? report->damage.at(0).what : report->problems.at(0)), true);
    }
    auto gens = repo.generations();
    if (!gens) {
      problem("list: " + gens.error().message(), true);
      return out;
    }
    std::set<GenerationId> committed;
    for (const auto& g : *gens) {
      if (g.state == GenerationState::kComplete || g.state == GenerationState::kPartial) committed.insert(g.id);
    }
    auto restores = [&](GenerationId g, const Images& images) {
      for (const auto& [name, bytes] : images) {
        auto img = repo.device_image(g, name);
        if (!img) {
          problem("generation " + std::to_string(g) + " device " + name + ": " + img.error().message(), true);
          continue;
        }
        MemSink sink(img->size_bytes);
        auto st = repo.restore(*img, sink, 2, nullptr, {});
        if (!st) {
          problem("restore of generation " + std::to_string(g) + " device " + name + ": " + st.error().message(), true);
        } else if (sink.data() != bytes) {
          problem("generation " + std::to_string(g) + " device " + name + " restores different bytes", false);
        }
      }
    };
    for (const auto& [g, images] : ack.committed) {
      if (committed.count(g) == 0) {
        if (ack.uncertain_prune.count(g) != 0) continue;  // the prune in flight made it
        problem("acknowledged generation " + std::to_string(g) + " is gone", true);
        continue;
      }
      restores(g, images);
    }
    for (GenerationId g : committed) {
      if (ack.committed.count(g) != 0) continue;
      if (ack.uncertain_gens.count(g) != 0) {
        restores(g, ack.intended.at(g));  // the one in flight made it: wholly
      } else if (ack.uncertain_prune.count(g) == 0) {
        problem("generation " + std::to_string(g) + " is listed but was " +
                    (ack.pruned.count(g) != 0 ? "pruned" : "never committed"), false);
      }
    }
    // The next backup works, and restores.
    Acknowledged next = ack;
    for (const auto& [g, images] : ack.intended) next.intended[g] = images;
    auto g = backup_images(repo, contents(next_step), {"a", "b"}, false, next);
    if (!g) {
      problem("the next backup: " + g.error().message(), true);
    } else {
      restores(*g, next.intended.at(*g));
    }
    return out;
  }

  struct Figures {
    uint64_t tried = 0, power_losses = 0, failures_injected = 0, dropped = 0, failed = 0, undetected = 0;
    uint64_t index_lost = 0;
    uint64_t files_reverted = 0, bytes_dropped = 0, entries_undone = 0;
    std::vector<std::string> first_problems;
  };

  // One crash point: k = 0 runs the workload whole, then cuts the power.
  // With `lose_index`, the index is also deleted after the cut (the
  // conservative model: the index lost entirely, rebuilt from the files).
  void one_point(uint64_t k, bool power, const std::function<void(test::FaultEnv&)>& setup, Figures& f,
                 const std::string& label, bool lose_index = false) {
    const std::string path = fresh_copy("run");
    test::FaultEnv env;
    if (setup) setup(env);
    if (k != 0) {
      if (power) {
        env.lose_power_at(k);
      } else {
        env.fail_at(k);
      }
    }
    Acknowledged ack = template_ack_;
    std::string bad = run_workload(path, env, power, ack);
    const bool hit = power ? env.power_lost() : env.failed();
    const auto stats = env.revert();
    ++f.tried;
    if (hit && power) ++f.power_losses;
    if (hit && !power) ++f.failures_injected;
    if (stats.dropped_anything()) ++f.dropped;
    f.files_reverted += stats.files_reverted;
    f.bytes_dropped += stats.bytes_dropped;
    f.entries_undone += stats.entries_undone;
    if (lose_index) {
      ++f.index_lost;
      for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + "/index.sqlite" + suffix);
    }
    test::FaultEnv clean;
    Outcome o = check(path, ack, static_cast<int>(workload().size()), &clean);
    if (!bad.empty()) o.problems.insert(o.problems.begin(), bad);
    if (!o.problems.empty()) {
      ++f.failed;
      if (!o.detected) ++f.undetected;
      if (f.first_problems.size() < 5) f.first_problems.push_back(label + ": " + o.problems.front());
    }
  }

  std::string template_;
  Acknowledged template_ack_;
};

std::string figures_line(const char* what, uint64_t seed, uint64_t calls, const auto& f) {
  return std::string(what) + ": seed " + std::to_string(seed) + ", " + std::to_string(calls) +
         " mutating calls in a whole run; " + std::to_string(f.tried) + " crash points tried (" +
         std::to_string(f.power_losses) + " power losses, " + std::to_string(f.failures_injected) +
         " single failures); " + std::to_string(f.dropped) + " dropped unsynced data (" +
         std::to_string(f.files_reverted) + " files reverted, " + std::to_string(f.bytes_dropped) + " bytes, " +
         std::to_string(f.entries_undone) + " directory entries undone); " + std::to_string(f.index_lost) +
         " with the index deleted too; failures " + std::to_string(f.failed) +
         " (undetected " + std::to_string(f.undetected) + ")";
}

TEST_F(PowerLossTest, PowerLossAtAnySeededCallLosesNothingAcknowledged) {
  const uint64_t seed = seed_from_env_or_draw();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  make_template();
  size_t points = 120;
  if (const char* s = std::getenv("BLKVAULT_POWER_LOSS_POINTS")) points = std::strtoul(s, nullptr, 10);

  // A whole run first: its trace says where the durable steps are, and a
  // power cut after it must keep everything.
  Figures f;
  std::vector<test::FaultEnv::Call> trace;
  {
    const std::string path = fresh_copy("dry");
    test::FaultEnv env;
    Acknowledged ack = template_ack_;
    ASSERT_EQ(run_workload(path, env, true, ack), "");
    ASSERT_EQ(ack.committed.size(), 3u) << "generations 3, 4 and 5 (1 and 2 pruned)";
    ASSERT_EQ(ack.pruned, (std::set<GenerationId>{1, 2}));
    trace = env.trace();
    (void)env.revert();
    Outcome o = check(path, ack, static_cast<int>(workload().size()), nullptr);
    ASSERT_TRUE(o.problems.empty()) << "a power cut after a whole run: " << o.problems.front();
  }
  const uint64_t calls = trace.size();
  ASSERT_GT(calls, 100u);
  std::vector<uint64_t> durable_steps;  // fsync, directory fsync, link, rename, unlink, mkdir
  for (const auto& c : trace) {
    if (c.kind != "write" && c.kind != "pwrite" && c.kind != "open" && c.kind != "truncate") durable_steps.push_back(c.n);
  }
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < points; ++i) {
    // Half at durable steps, half anywhere; one in four a single failed call;
    // every tenth also loses the whole index.
    const uint64_t k = i % 2 == 0 ? durable_steps[rng() % durable_steps.size()] : 1 + rng() % calls;
    const bool power = rng() % 4 != 0;
    const bool lose_index = i % 10 == 9;
    const auto& c = trace[k - 1];
    one_point(k, power, {}, f,
              std::string(power ? "power lost" : "failure") + " at call " + std::to_string(k) + " (" + c.kind + " " +
                  c.path + ")" + (lose_index ? ", index deleted" : ""),
              lose_index);
  }
  const std::string line = figures_line("power loss", seed, calls, f);
  std::printf("%s\n", line.c_str());
  RecordProperty("figures", line);
  EXPECT_EQ(f.tried, points);
  EXPECT_GT(f.power_losses, points / 2);
  EXPECT_GT(f.dropped, 0u) << "no crash point dropped anything: the layer is not cutting power";
  EXPECT_EQ(f.failed, 0u) << line << "\nfirst: " << (f.first_problems.empty() ? "" : f.first_problems.front());
  for (const auto& p : f.first_problems) ADD_FAILURE() << p;
}

// The campaign can catch an ordering bug: with the packs' fsyncs skipped (the
// layer performs them but keeps nothing of them), a power cut after a whole
// run leaves published, indexed, referenced packs without their data.
TEST_F(PowerLossTest, APackPublishedBeforeItsFsyncIsCaught) {
  make_template();
  Figures f;
  one_point(0, true,
            [](test::FaultEnv& env) {
              env.ignore_file_syncs([](const std::string& p) { return p.find("/packs/") != std::string::npos; });
            },
            f, "packs not fsynced");
  ASSERT_EQ(f.failed, 1u);
  EXPECT_EQ(f.undetected, 0u) << "the loss is reported (verify, restore), never wrong bytes";
  EXPECT_NE(f.first_problems.at(0).find("packs/"), std::string::npos) << f.first_problems.at(0);
}

// Likewise with the pack directories' fsyncs skipped: the packs' names vanish.
TEST_F(PowerLossTest, APackWhoseDirectoryIsNotFsyncedIsCaught) {
  make_template();
  Figures f;
  one_point(0, true,
            [](test::FaultEnv& env) {
              env.ignore_dir_syncs([](const std::string& p) { return p.find("/packs") != std::string::npos; });
            },
            f, "pack directories not fsynced");
  ASSERT_EQ(f.failed, 1u);
  EXPECT_EQ(f.undetected, 0u);
  EXPECT_NE(f.first_problems.at(0).find("pack"), std::string::npos) << f.first_problems.at(0);
}

// And with the manifests' fsyncs skipped, acknowledged generations are gone.
TEST_F(PowerLossTest, AManifestPublishedBeforeItsFsyncIsCaught) {
  make_template();
  Figures f;
  one_point(0, true,
            [](test::FaultEnv& env) {
              env.ignore_file_syncs([](const std::string& p) { return p.find("/manifests/") != std::string::npos; });
            },
            f, "manifests not fsynced");
  ASSERT_EQ(f.failed, 1u);
  EXPECT_EQ(f.undetected, 0u);
}

// The index is a cache of packs and manifests: with every sync of its WAL
// skipped, a power cut takes it back to its last checkpoint, and the next open
// replays the manifests it lost. Nothing acknowledged is lost.
TEST_F(PowerLossTest, AnIndexThatLosesItsWalIsBroughtBackFromTheManifests) {
  make_template();
  Figures f;
  one_point(0, true,
            [](test::FaultEnv& env) {
              env.ignore_file_syncs([](const std::string& p) { return p.ends_with("-wal"); });
            },
            f, "index WAL not fsynced");
  EXPECT_EQ(f.failed, 0u) << f.first_problems.at(0);
  EXPECT_EQ(f.dropped, 1u);
}

// The index's own settings, through the same layer: WAL with synchronous=FULL
// (what Repository uses) keeps every acknowledged commit at every crash point;
// synchronous=NORMAL would lose one, which is why FULL is chosen.
class IndexPowerLossTest : public ::testing::Test {
 protected:
  // Commits `rows` inserts one transaction each through `env`, with power
  // lost at call `k` (0: none; with `cut_before_close`, at the first call after
  // the last commit, so the close's checkpoint never happens), then reverts.
  // Returns how many commits were acknowledged and how many rows the
  // reopened index has.
  std::pair<int, int> run(const char* synchronous, uint64_t k, int rows, bool cut_before_close = false) {
    const std::string path = dir_ / "index.sqlite";
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
    {
      auto db = sql::Db::open(path);
      EXPECT_TRUE(db);
      EXPECT_TRUE(db->exec("PRAGMA journal_mode=WAL"));
      EXPECT_TRUE(db->exec("CREATE TABLE t(x INTEGER PRIMARY KEY, v BLOB)"));
    }
    test::FaultEnv env;
    if (k != 0) env.lose_power_at(k);
    int acknowledged = 0;
    {
      auto db = sql::Db::open(path, &env);
      if (db && db->exec(std::string("PRAGMA synchronous=") + synchronous)) {
        for (int i = 0; i < rows; ++i) {
          auto tx = sql::Transaction::begin(*db);
          if (!tx) break;
          auto st = db->prepare("INSERT INTO t(v) VALUES (zeroblob(3000))");
          if (!st || !st->run()) break;
          if (!tx->commit()) break;
          ++acknowledged;
        }
      }
      if (cut_before_close) env.lose_power_at(env.calls() + 1);
    }
    calls_ = env.calls();
    (void)env.revert();
    auto db = sql::Db::open(path);
    EXPECT_TRUE(db);
    auto check = db->prepare("PRAGMA integrity_check");
    EXPECT_TRUE(check && *check->step());
    EXPECT_EQ(check->text(0), "ok");
    auto n = db->query_int("SELECT count(*) FROM t");
    EXPECT_TRUE(n);
    return {acknowledged, static_cast<int>(n->value_or(-1))};
  }
  test::TempDir dir_;
  uint64_t calls_ = 0;
};

TEST_F(IndexPowerLossTest, WalWithSynchronousFullKeepsEveryAcknowledgedCommit) {
  auto [ack, rows] = run("FULL", 0, 5, true);
  EXPECT_EQ(ack, 5);
  EXPECT_EQ(rows, 5) << "a power cut before the close's checkpoint keeps every commit";
  run("FULL", 0, 5);
  const uint64_t calls = calls_;  // a whole run, close included
  ASSERT_GT(calls, 10u);
  for (uint64_t k = 1; k <= calls; ++k) {
    SCOPED_TRACE("power lost at call " + std::to_string(k));
    auto [a, r] = run("FULL", k, 5);
    EXPECT_TRUE(r == a || r == a + 1) << a << " acknowledged, " << r << " found";
  }
}

TEST_F(IndexPowerLossTest, WalWithSynchronousNormalLosesAnAcknowledgedCommit) {
  auto [ack, rows] = run("NORMAL", 0, 5, true);
  EXPECT_EQ(ack, 5);
  EXPECT_LT(rows, 5) << "NORMAL does not sync the WAL at commit: a power cut takes acknowledged commits";
}

}  // namespace
}  // namespace blkvault::repo
