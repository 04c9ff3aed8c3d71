// Rolling verify through the real executable: verify --data --subset N/M,
// P% (seeded), --older-than and --budget; damage claimed only by the run that
// reads it; status's coverage line and --packs listing; usage errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "app/backup_support.h"
#include "app/output.h"
#include "repo/pack.h"
#include "repo/repository.h"

namespace blkvault::test {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

class RollingVerifyCliTest : public BackupCliTest {
 protected:
  // One device of 16 chunks in packs of two chunks each.
  void SetUp() override {
    auto r = bv({"init", "--chunk-size", std::to_string(kChunk), "--pack-size", std::to_string(2 * kChunk),
                 "--kdf-ops", "1", "--kdf-mem", "64K"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    dev_ = make_device("a.img", 16 * kChunk, 5);
    backup_ok({dev_});
    const auto v = status_json(true);
    for (const auto& p : v["per_pack"]) all_.insert(p["name"].get<std::string>());
    ASSERT_GE(all_.size(), 4u);
  }

  json status_json(bool packs = false) {
    auto r = packs ? bv({"--json", "status", "--packs"}) : bv({"--json", "status"});
    EXPECT_EQ(r.exit_status, 0) << r.err;
    return json::parse(r.out)["repository"]["verification"];
  }
  // The "  data verified: …" line of `status`.
  std::string status_line() {
    auto r = bv({"status"});
    EXPECT_EQ(r.exit_status, 0) << r.err;
    const auto at = r.out.find("  data verified: ");
    if (at == std::string::npos) return "(none in: " + r.out + ")";
    return r.out.substr(at, r.out.find('\n', at) + 1 - at);
  }
  json verify_json(const std::vector<std::string>& args, int expect_exit = 0) {
    std::vector<std::string> all = {"--json", "verify", "--data"};
    all.insert(all.end(), args.begin(), args.end());
    auto r = bv(all);
    EXPECT_EQ(r.exit_status, expect_exit) << r.err;
    return json::parse(r.out);
  }
  static std::set<std::string> names(const json& j) {
    std::set<std::string> out;
    for (const auto& n : j["packs_checked"]) out.insert(n.get<std::string>());
    return out;
  }
  // Flips one byte inside the stored data of the device's third stored chunk
  // (the image has a zero region, never stored); returns its pack and index.
  std::pair<std::string, uint64_t> damage_chunk() {
    auto repo = repo::Repository::open(repo_, repo_options());
    EXPECT_TRUE(repo) << repo.error().message();
    auto img = (*repo)->device_image(1, dev_);
    EXPECT_TRUE(img);
    const repo::ChunkRef ref = img->chunks.at(2);
    const std::string file = repo_ + "/" + img->packs[ref.pack];
    fs::permissions(file, fs::perms::owner_write, fs::perm_options::add);
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(ref.offset + repo::BlobHeader::kSize + 3);
    f.seekg(at);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(at);
    f.write(&c, 1);
    return {img->packs[ref.pack], ref.chunk_index};
  }

  std::string dev_;
  std::set<std::string> all_;
};

TEST_F(RollingVerifyCliTest, ThreePartsCheckDisjointPacksThatCoverAllAndStatusShowsTheCoverage) {
  const size_t n = all_.size();
  EXPECT_EQ(status_line(), fmt::format("  data verified: 0 of {} pack(s) (never: blkvault verify --data)\n", n));
  auto before = status_json();
  EXPECT_EQ(before["packs"], n);
  EXPECT_EQ(before["verified"], 0);
  EXPECT_EQ(before["oldest_verified"], nullptr);
  EXPECT_FALSE(before.contains("per_pack")) << "per-pack detail only with --packs";

  std::set<std::string> seen;
  for (int part = 1; part <= 3; ++part) {
    const std::string subset = std::to_string(part) + "/3";
    auto j = verify_json({"--subset", subset});
    EXPECT_EQ(j["clean"], true);
    EXPECT_EQ(j["subset"], subset);
    EXPECT_EQ(j["packs_in_scope"], n);
    EXPECT_EQ(j["packs_selected"], j["packs_checked"].size());
    EXPECT_EQ(j["packs_left"], 0);
    for (const auto& name : names(j)) EXPECT_TRUE(seen.insert(name).second) << name << " is in two parts";
    if (part == 3) {
      // The text of the same run, exactly.
      auto text = bv({"verify", "--data", "--subset", subset});
      ASSERT_EQ(text.exit_status, 0) << text.err;
      EXPECT_EQ(text.out, fmt::format("selected {} of {} pack(s): part 3 of 3 by pack name hash\n"
                                      "verified 1 generation(s): {} pack(s), {} chunk(s), {} read and re-hashed: "
                                      "no damage\n",
                                      j["packs_checked"].size(), n, j["packs"].get<uint64_t>(),
                                      j["chunks"].get<uint64_t>(), app::format_bytes(j["bytes_read"].get<uint64_t>())));
    }
  }
  EXPECT_EQ(seen, all_);

  auto after = status_json(true);
  EXPECT_EQ(after["verified"], n);
  EXPECT_EQ(after["never_verified"], 0);
  EXPECT_EQ(after["damaged"], 0);
  int64_t oldest = INT64_MAX;
  std::string listing = "  packs (last data verification):\n";
  for (const auto& p : after["per_pack"]) {
    ASSERT_TRUE(p["last_verified_ms"].is_number()) << p;
    const int64_t ms = p["last_verified_ms"].get<int64_t>();
    oldest = std::min(oldest, ms);
    EXPECT_EQ(p["result"], "ok");
    EXPECT_EQ(p["last_verified"], app::format_time_utc(ms));
    listing += fmt::format("    {}  {:>10}  {} UTC  ok\n", p["name"].get<std::string>(),
                           app::format_bytes(p["size_bytes"].get<uint64_t>()), app::format_time_utc(ms));
  }
  EXPECT_EQ(after["oldest_verified_ms"], oldest);
  EXPECT_EQ(status_line(), fmt::format("  data verified: {} of {} pack(s), oldest {} UTC\n", n, n,
                                       app::format_time_utc(oldest)));
  auto packs = bv({"status", "--packs"});
  ASSERT_EQ(packs.exit_status, 0) << packs.err;
  EXPECT_NE(packs.out.find(status_line() + listing), std::string::npos) << packs.out;

  // Everything was verified just now: --older-than 7d has nothing to do.
  auto none = bv({"verify", "--data", "--older-than", "7d"});
  EXPECT_EQ(none.exit_status, 0) << none.err;
  EXPECT_EQ(none.out, fmt::format("selected 0 of {} pack(s): not verified in the last 7d\n"
                                  "verified 1 generation(s): 0 pack(s), 0 chunk(s), {} read and re-hashed: no damage\n",
                                  n, app::format_bytes(0)));
}

TEST_F(RollingVerifyCliTest, ATinyBudgetChecksAtLeastOnePackAndTheNextRunsGoOnUntilAllAreCovered) {
  const size_t n = all_.size();
  auto first = bv({"verify", "--data", "--budget", "1ms"});
  ASSERT_EQ(first.exit_status, 0) << first.err;
  const std::string head =
      fmt::format("selected {} of {} pack(s): least recently verified first for at most 1ms\n  budget 1ms: checked ", n, n);
  ASSERT_EQ(first.out.rfind(head, 0), 0u) << first.out;
  size_t checked = 0, left = 0;
  ASSERT_EQ(std::sscanf(first.out.c_str() + head.size(), "%zu, %zu left for the next run\n", &checked, &left), 2)
      << first.out;
  EXPECT_GE(checked, 1u);
  EXPECT_EQ(checked + left, n);
  EXPECT_EQ(status_json()["verified"], checked);

  std::set<std::string> seen;
  const auto recorded = status_json(true);
  for (const auto& p : recorded["per_pack"]) {
    if (p["result"] == "ok") seen.insert(p["name"].get<std::string>());
  }
  for (size_t run = 0; seen.size() < n; ++run) {
    ASSERT_LT(run, n) << "no progress";
    auto j = verify_json({"--budget", "1ms"});
    ASSERT_GE(j["packs_checked"].size(), 1u);
    EXPECT_EQ(j["packs_selected"], n);
    EXPECT_EQ(j["packs_left"], n - j["packs_checked"].size());
    size_t fresh = 0;
    const size_t before = seen.size();
    for (const auto& name : names(j)) fresh += seen.insert(name).second ? 1 : 0;
    // Least recently verified first: packs never verified come before any re-check.
    EXPECT_EQ(fresh, std::min(j["packs_checked"].size(), n - before));
    EXPECT_EQ(status_json()["verified"], seen.size());
  }
  EXPECT_EQ(status_json()["never_verified"], 0);
}

TEST_F(RollingVerifyCliTest, AFlippedByteIsReportedOnlyByThePartThatReadsItsPack) {
  const auto [pack, chunk] = damage_chunk();
  int claimed = 0;
  for (int part = 1; part <= 3; ++part) {
    const std::string subset = std::to_string(part) + "/3";
    auto r = bv({"verify", "--data", "--subset", subset});
    auto j = verify_json({"--subset", subset}, r.exit_status);
    if (names(j).count(pack) == 0) {
      EXPECT_EQ(r.exit_status, 0) << subset << ": " << r.out << r.err;
      EXPECT_EQ(r.out.find("damaged"), std::string::npos) << r.out;
      continue;
    }
    ++claimed;
    EXPECT_EQ(r.exit_status, 3);
    EXPECT_EQ(r.err, "blkvault: verify " + repo_ + ": found 0 problem(s) and 1 damaged chunk(s) (listed above)\n");
    EXPECT_NE(r.out.find("\ndamaged: " + pack + " at offset "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(": stored bytes fail their checksum\n  generation 1 device " + dev_ + " bytes " +
                         std::to_string(chunk * kChunk) + "-" + std::to_string((chunk + 1) * kChunk - 1) + "\n"),
              std::string::npos)
        << r.out;
    ASSERT_EQ(j["damage"].size(), 1u);
    EXPECT_EQ(j["damage"][0]["affected"][0]["offset_bytes"], chunk * kChunk);
  }
  EXPECT_EQ(claimed, 1);
  auto v = status_json(true);
  EXPECT_EQ(v["damaged"], 1);
  for (const auto& p : v["per_pack"]) {
    EXPECT_EQ(p["result"], p["name"] == pack ? "damaged" : "ok") << p;
    if (p["name"] == pack) {
      EXPECT_NE(p["problem"].get<std::string>().find(": stored bytes fail their checksum"), std::string::npos) << p;
    }
  }
  const auto line = status_line();
  EXPECT_NE(line.find(", 1 damaged at the last check\n"), std::string::npos) << line;
}

TEST_F(RollingVerifyCliTest, ARandomShareIsSeededPrintedAndReplayed) {
  auto r = bv({"verify", "--data", "--subset", "50%"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto at = r.out.find("(--seed ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string seed = r.out.substr(at + 8, r.out.find(' ', at + 8) - (at + 8));
  const size_t half = (all_.size() + 1) / 2;
  EXPECT_EQ(r.out.rfind(fmt::format("selected {} of {} pack(s): a random 50% of the packs (seed {})\n"
                                    "  (--seed {} selects the same packs again)\n",
                                    half, all_.size(), seed, seed),
                        0),
            0u)
      << r.out;
  auto a = verify_json({"--subset", "50%", "--seed", seed});
  auto b = verify_json({"--subset", "50%", "--seed", seed});
  EXPECT_EQ(a["seed"].get<uint64_t>(), std::stoull(seed));
  EXPECT_EQ(a["packs_checked"].size(), half);
  EXPECT_EQ(names(a), names(b));
}

TEST_F(RollingVerifyCliTest, BadSelectionsAreOneLineUsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--data", "--subset", "0/3"}, "--subset 0/3: the part must be from 1 to 3 (N/M: the N-th of M parts)"},
      {{"--data", "--subset", "4/3"}, "--subset 4/3: the part must be from 1 to 3 (N/M: the N-th of M parts)"},
      {{"--data", "--subset", "1/0"}, "--subset 1/0: the number of parts must be at least 1"},
      {{"--data", "--subset", "150%"}, "--subset 150%: a percentage must be more than 0 and at most 100"},
      {{"--data", "--subset", "0%"}, "--subset 0%: a percentage must be more than 0 and at most 100"},
      {{"--data", "--subset", "abc"},
       "--subset abc: expected N/M (the N-th of M parts, e.g. 1/7), P% (a random share, e.g. 10%) or a SIZE "
       "(random packs up to it, e.g. 50G)"},
      {{"--data", "--budget", "abc"},
       "--budget: invalid duration 'abc': expected seconds, or numbers with units d, h, m, s such as '90s', '5m' or "
       "'1h30m'"},
      {{"--data", "--budget", "0"}, "--budget: 0 leaves no time (give a duration such as 30m)"},
      {{"--data", "--older-than", "7x"},
       "--older-than: invalid duration '7x': expected seconds, or numbers with units d, h, m, s such as '90s', '5m' "
       "or '1h30m'"},
      {{"--data", "--subset", "1/3", "--seed", "9"}, "--seed only applies to a random --subset (P% or SIZE)"},
      {{"--data", "--subset", "10%", "--seed", "x"}, "--seed x: expected a whole number"},
      {{"--subset", "1/3"}, "--subset needs --data (it chooses which packs' data to read)"},
      {{"--budget", "30m"}, "--budget needs --data (it chooses which packs' data to read)"},
      {{"--older-than", "7d"}, "--older-than needs --data (it chooses which packs' data to read)"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> argv = {"verify"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = bv(argv);
    EXPECT_EQ(r.exit_status, 2) << args[1];
    EXPECT_EQ(r.err, "blkvault: " + message + "\n");
    EXPECT_EQ(r.out, "");
  }
  EXPECT_EQ(status_json()["verified"], 0) << "a refused run records nothing";
}

}  // namespace
}  // namespace blkvault::test
