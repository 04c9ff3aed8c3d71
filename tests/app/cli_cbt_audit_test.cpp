// `backup --cbt-audit` end to end on the simulated module: a write the CBT map
// missed (`sim fault --lose-next-write`) is caught at the default rate within
// the documented number of runs, the run says so and exits 7 with a generation
// that restores byte-identical, a correct CBT never raises a false alarm, and
// `--cbt-audit 0` reads nothing beyond the changed chunks.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "app/backup_support.h"

namespace blkvault::test {
namespace {

constexpr uint64_t kDeviceSize = 8 << 20;  // 64 chunks of kChunk

class CbtAuditCliTest : public BackupCliTest {
 protected:
  // `backup` of `devices` with the fixture's diff storage and `extra` options.
  CliRun backup(const std::vector<std::string>& devices, const std::vector<std::string>& extra, bool json = true) {
    std::vector<std::string> args;
    if (json) args.push_back("--json");
    args.push_back("backup");
    for (const auto& a : diff_storage_args()) args.push_back(a);
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), devices.begin(), devices.end());
    return bv(args);
  }
  // The next tracked write to `device` changes it without a CBT mark, and
  // escapes the simulation's fingerprint rescan too.
  void lose_write(const std::string& device, uint64_t offset, const std::string& data) {
    auto f = bv({"-q", "sim", "fault", "--device", device, "--lose-next-write"});
    ASSERT_EQ(f.exit_status, 0) << f.err;
    sim_write(device, offset, data);
  }
  static nlohmann::json parse(const CliRun& r) {
    try {
      return nlohmann::json::parse(r.out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "no JSON on stdout: " << e.what() << "\n" << r.out << r.err;
      return nlohmann::json::object();
    }
  }
  static std::string range(uint64_t chunk_index) {
    return std::to_string(chunk_index * kChunk) + ".." + std::to_string((chunk_index + 1) * kChunk);
  }
};

// docs/RESTORE.md, "Auditing the CBT": with one stale chunk among the 64
// unchanged chunks of this device, the default rate samples 16 (the floor), so
// each run catches it with p = 16/64 = 1/4 and 49 runs miss it with
// probability 0.75^49 < 1e-6. The seeds are derived from the test seed, so a
// failure replays with BLKVAULT_TEST_SEED.
TEST_F(CbtAuditCliTest, ALostWriteIsCaughtAtTheDefaultRateWithinTheDocumentedBound) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, seed);
  backup_ok({a});
  const uint64_t stale = rng() % (kDeviceSize / kChunk / 4);  // in the random first quarter: never zeros
  lose_write(a, stale * kChunk + rng() % (kChunk - 64), random_bytes(rng, 64));

  constexpr int kBound = 49;
  int caught_at = 0;
  for (int run = 1; run <= kBound && caught_at == 0; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    auto r = backup({a}, {"--cbt-audit-seed", std::to_string(seed + static_cast<uint64_t>(run))});
    auto j = parse(r);
    const auto& audit = j["devices"][0]["cbt_audit"];
    ASSERT_TRUE(audit.is_object()) << r.out;
    EXPECT_EQ(audit["unchanged_chunks"], kDeviceSize / kChunk);
    EXPECT_EQ(audit["sampled_chunks"], 16);
    EXPECT_EQ(audit["percent"], 1.0);
    const std::string gen = std::to_string(j["generation"].get<uint64_t>());
    if (r.exit_status == 7) {
      caught_at = run;
      EXPECT_EQ(audit["missed_write"], true);
      EXPECT_EQ(audit["missed"], nlohmann::json::parse("[{\"offset_bytes\":" + std::to_string(stale * kChunk) +
                                                       ",\"length_bytes\":" + std::to_string(kChunk) + "}]"));
      EXPECT_EQ(j["devices"][0]["mode"], "full");
      EXPECT_EQ(j["devices"][0]["read_bytes"], kDeviceSize);
      EXPECT_TRUE(restore_bytes(gen, a) == read_whole(a)) << "the full read must store what the device holds";
    } else {
      ASSERT_EQ(r.exit_status, 0) << r.err;
      EXPECT_EQ(audit["missed_write"], false);
      EXPECT_EQ(j["devices"][0]["read_bytes"], 0);
      // The lie at work: this generation silently holds the stale chunk.
      EXPECT_FALSE(restore_bytes(gen, a) == read_whole(a));
    }
  }
  ASSERT_GT(caught_at, 0) << "not caught in " << kBound << " runs (P < 1e-6 for a correct audit)";
  // Healed: the next incremental is clean again.
  auto next = backup({a}, {});
  ASSERT_EQ(next.exit_status, 0) << next.err;
  EXPECT_EQ(parse(next)["devices"][0]["mode"], "incremental");
  EXPECT_TRUE(restore_bytes("latest", a) == read_whole(a));
}

TEST_F(CbtAuditCliTest, NoFalseAlarmOnACorrectCbtAcrossManyIncrementals) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, seed + 1);
  const std::string b = make_device("b.img", kDeviceSize - 12288, seed + 2);  // a short last chunk
  backup_ok({a, b});
  for (int round = 0; round < 12; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    for (int w = 0; w < 5; ++w) {
      const std::string& dev = w % 2 ? b : a;
      const uint64_t size = w % 2 ? kDeviceSize - 12288 : kDeviceSize;
      const uint64_t len = 1 + rng() % 150000;
      sim_write(dev, rng() % (size - len), random_bytes(rng, len));
    }
    // Every other round audits every unchanged chunk: the strictest check.
    const std::string percent = round % 2 ? "100" : "1";
    auto r = backup({a, b}, {"--cbt-audit", percent});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    auto j = parse(r);
    for (const auto& d : j["devices"]) {
      SCOPED_TRACE(d["name"].get<std::string>());
      EXPECT_EQ(d["mode"], "incremental");
      ASSERT_TRUE(d["cbt_audit"].is_object());
      EXPECT_EQ(d["cbt_audit"]["missed_write"], false);
      EXPECT_EQ(d["cbt_audit"]["against"], j["generation"].get<uint64_t>() - 1);
      const uint64_t unchanged = d["cbt_audit"]["unchanged_chunks"];
      EXPECT_EQ(d["cbt_audit"]["sampled_chunks"], percent == "100" ? unchanged : std::min<uint64_t>(16, unchanged));
      EXPECT_EQ(d["snapshot_read_bytes"].get<uint64_t>(),
                d["read_bytes"].get<uint64_t>() + d["cbt_audit"]["sampled_bytes"].get<uint64_t>());
    }
  }
  EXPECT_TRUE(restore_bytes("latest", a) == read_whole(a));
  EXPECT_TRUE(restore_bytes("latest", b) == read_whole(b));
}

TEST_F(CbtAuditCliTest, AFindingIsLoudExitsSevenAndTheGenerationRestoresByteIdentical) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 21);
  backup_ok({a});
  const std::string before = read_whole(a);
  lose_write(a, 5 * kChunk + 100, "a write the tracker never saw");
  auto r = backup({a}, {"--cbt-audit", "100", "--cbt-audit-seed", "0x2a"}, /*json=*/false);
  EXPECT_EQ(r.exit_status, 7) << r.err;
  EXPECT_EQ(r.err, "warning: CBT audit of " + a + ": bytes " + range(5) +
                       " differ from generation 1 but the CBT map marks them unchanged: the CBT missed a write; "
                       "reading " + a + " fully\n"
                       "blkvault: generation 2 committed, but the CBT audit found a write the CBT map missed on " +
                       a + " (bytes " + range(5) + "); the device was read fully\n");
  EXPECT_EQ(r.out.rfind("generation 2 committed (complete): 1 device in ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\n  " + a + ": full read (the CBT audit found a write the CBT map missed) of 8.0 MiB; "
                       "read 8.0 MiB in "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\n    CBT audit: re-read 64 of 64 unchanged chunks (8.0 MiB, seed 0x000000000000002a): "
                       "bytes " + range(5) + " differ from generation 1: the CBT map missed a write\n"),
            std::string::npos)
      << r.out;
  // The generation holds what the device holds, not the stale chunk.
  EXPECT_TRUE(restore_bytes("2", a) == read_whole(a));
  EXPECT_TRUE(restore_bytes("1", a) == before);

  // list, status and their --json show the finding.
  auto list = bv({"list", "--device", a});
  ASSERT_EQ(list.exit_status, 0) << list.err;
  EXPECT_NE(list.out.find("  CBT audit: bytes " + range(5) +
                          " differ from generation 1 (the CBT map missed a write); read fully\n"),
            std::string::npos)
      << list.out;
  auto all = bv({"list"});
  EXPECT_NE(all.out.find("\n       " + a + ": CBT audit: bytes " + range(5)), std::string::npos) << all.out;
  auto list_json = nlohmann::json::parse(bv({"--json", "list"}).out);
  EXPECT_TRUE(list_json["generations"][0]["devices"][0]["cbt_audit"].is_null());
  EXPECT_EQ(list_json["generations"][1]["devices"][0]["cbt_audit"]["missed_write"], true);
  EXPECT_EQ(list_json["generations"][1]["devices"][0]["cbt_audit"]["seed"], "0x000000000000002a");
  EXPECT_EQ(list_json["generations"][1]["devices"][0]["parent"], nullptr);
  auto status = bv({"status"});
  EXPECT_NE(status.out.find("  CBT audit: 1 missed write(s) found, the last in generation 2 on " + a + " (bytes " +
                            range(5) + " differ from generation 1)\n"),
            std::string::npos)
      << status.out;
  auto status_json = nlohmann::json::parse(bv({"--json", "status"}).out);
  ASSERT_EQ(status_json["repository"]["cbt_audit_events"].size(), 1u);
  EXPECT_EQ(status_json["repository"]["cbt_audit_events"][0]["generation"], 2);
  EXPECT_EQ(status_json["repository"]["cbt_audit_events"][0]["device"], a);

  // The full read started a new chain: the next run is a clean incremental.
  sim_write(a, 0, "tracked");
  auto next = backup({a}, {"--cbt-audit", "100"});
  ASSERT_EQ(next.exit_status, 0) << next.err;
  auto j = parse(next);
  EXPECT_EQ(j["devices"][0]["mode"], "incremental");
  EXPECT_EQ(j["devices"][0]["cbt_audit"]["missed_write"], false);
  EXPECT_EQ(j["devices"][0]["cbt_audit"]["against"], 2);
  EXPECT_TRUE(restore_bytes("latest", a) == read_whole(a));
}

TEST_F(CbtAuditCliTest, ZeroReadsNothingBeyondTheChangedChunks) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 31);
  backup_ok({a});
  sim_write(a, 3 * kChunk + 10, "x");
  sim_write(a, 40 * kChunk - 1, "yy");  // two chunks
  auto off = backup_ok({a}, {"--cbt-audit", "0"});
  EXPECT_EQ(off["devices"][0]["mode"], "incremental");
  EXPECT_EQ(off["devices"][0]["read_bytes"], 3 * kChunk);
  EXPECT_EQ(off["devices"][0]["snapshot_read_bytes"], 3 * kChunk);
  EXPECT_TRUE(off["devices"][0]["cbt_audit"].is_null());

  sim_write(a, 7 * kChunk, "z");
  auto on = backup_ok({a});
  EXPECT_EQ(on["devices"][0]["read_bytes"], kChunk);
  EXPECT_EQ(on["devices"][0]["cbt_audit"]["sampled_chunks"], 16);
  EXPECT_EQ(on["devices"][0]["cbt_audit"]["unchanged_chunks"], 63);
  EXPECT_EQ(on["devices"][0]["snapshot_read_bytes"], 17 * kChunk);

  // And what 0 gives up: a lost write goes unnoticed, the generation is wrong.
  lose_write(a, 9 * kChunk, "lost");
  auto blind = backup_ok({a}, {"--cbt-audit", "0"});
  EXPECT_EQ(blind["devices"][0]["read_bytes"], 0);
  EXPECT_EQ(blind["devices"][0]["snapshot_read_bytes"], 0);
  EXPECT_FALSE(restore_bytes("latest", a) == read_whole(a));
}

TEST_F(CbtAuditCliTest, WritesInALostRangeAreCaughtWhileTheRestOfTheWriteIsTracked) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 61);
  backup_ok({a});
  auto f = bv({"-q", "sim", "fault", "--device", a, "--lose-writes", std::to_string(10 * kChunk) + ":" +
                                                                         std::to_string(kChunk)});
  ASSERT_EQ(f.exit_status, 0) << f.err;
  sim_write(a, 10 * kChunk + 7, "inside the lost range");
  sim_write(a, 20 * kChunk + 7, "outside it");
  auto r = backup({a}, {"--cbt-audit", "100"});
  EXPECT_EQ(r.exit_status, 7) << r.err;
  auto j = parse(r);
  const auto& d = j["devices"][0];
  EXPECT_EQ(d["cbt_audit"]["unchanged_chunks"], 63);  // only the tracked write's chunk changed
  EXPECT_EQ(d["changed_bytes"], kDeviceSize);         // then the full read
  EXPECT_EQ(d["cbt_audit"]["missed"],
            nlohmann::json::parse("[{\"offset_bytes\":" + std::to_string(10 * kChunk) + ",\"length_bytes\":" +
                                  std::to_string(kChunk) + "}]"));
  EXPECT_TRUE(restore_bytes("latest", a) == read_whole(a));
  ASSERT_EQ(bv({"-q", "sim", "fault", "--clear"}).exit_status, 0);
  sim_write(a, 10 * kChunk, "tracked again");
  auto next = backup_ok({a}, {"--cbt-audit", "100"});
  EXPECT_EQ(next["devices"][0]["read_bytes"], kChunk);
  EXPECT_EQ(next["devices"][0]["cbt_audit"]["missed_write"], false);
}

TEST_F(CbtAuditCliTest, AJobRunReportsAFindingAsExitSevenAndStillAppliesRetention) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 51);
  const std::string config = dir_ / "blkvault.toml", env = dir_ / "on-failure.env";
  std::ofstream(config) << "module = \"" << sim_ << "\"\ncbt-audit = 100\n[repository]\npath = \"" << repo_
                        << "\"\n[diff-storage]\nsize = \"4M\"\nlimit = \"16M\"\n[report]\nsyslog = false\n"
                        << "on-failure = [\"sh\", \"-c\", \"echo $BLKVAULT_EXIT_STATUS $BLKVAULT_GENERATION > " << env
                        << "\"]\n[job.nightly]\ndevices = [\"" << a << "\"]\nretention = { keep-last = 1 }\n";
  auto first = bv({"run", "nightly", "--config", config});
  ASSERT_EQ(first.exit_status, 0) << first.err;
  lose_write(a, 2 * kChunk, "unseen");
  auto r = bv({"run", "nightly", "--config", config});
  EXPECT_EQ(r.exit_status, 7) << r.err;
  EXPECT_NE(r.err.find("blkvault: job nightly: generation 2 committed, but the CBT audit found a write the CBT map "
                       "missed on " + a + " (bytes " + range(2) + "); the device was read fully\n"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read_whole(env), "7 2\n");
  // Retention ran (keep-last 1): only the fully read generation is left, and it is right.
  auto list = nlohmann::json::parse(bv({"--json", "list"}).out);
  ASSERT_EQ(list["generations"].size(), 1u);
  EXPECT_EQ(list["generations"][0]["id"], 2);
  EXPECT_TRUE(restore_bytes("2", a) == read_whole(a));
}

TEST_F(CbtAuditCliTest, BadValuesAreOneLineUsageErrors) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 41);
  for (const std::string v : {"101", "-1", "abc", "1%", "", "1e2", "nan"}) {
    SCOPED_TRACE("--cbt-audit '" + v + "'");
    auto r = bv({"backup", "--cbt-audit", v, a});
    EXPECT_EQ(r.exit_status, 2);
    EXPECT_EQ(r.err, "blkvault: --cbt-audit '" + v + "': expected a percentage from 0 to 100 (0 turns the audit off)\n");
    EXPECT_EQ(r.out, "");
  }
  auto seed = bv({"backup", "--cbt-audit-seed", "xyz", a});
  EXPECT_EQ(seed.exit_status, 2);
  EXPECT_EQ(seed.err, "blkvault: --cbt-audit-seed 'xyz': expected a 64-bit number (decimal, or hex with 0x)\n");
  EXPECT_TRUE(sim_show()["snapshots"].empty());
}

}  // namespace
}  // namespace blkvault::test
