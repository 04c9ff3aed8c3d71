// tests/app/backup_support.h — the fixture of the end-to-end backup/restore CLI
// tests: a temp dir holding a repository, a simulated module and device image
// files, and helpers that run the real executable against them.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/cli_support.h"
#include "repo/repository.h"

namespace blkvault::test {

// BLKVAULT_TEST_SEED, or a fresh random seed (print it with SCOPED_TRACE).
uint64_t test_seed();

class BackupCliTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kChunk = 128 << 10;  // the repository's chunk size (2 CBT blocks of 64 KiB)
  static constexpr const char* kPassphrase = "test passphrase";  // BLKVAULT_PASSWORD of every run

  TempDir dir_;
  std::string repo_ = dir_ / "repo";
  std::string sim_dir_ = dir_ / "sim";
  std::string sim_ = "sim:" + sim_dir_;

  // Runs blkvault with BLKVAULT_REPO and BLKVAULT_MODULE set to this fixture's.
  CliRun bv(const std::vector<std::string>& args, const std::string& stdin_path = "",
            const std::vector<std::string>& extra_env = {});
  // Options to open this fixture's (encrypted) repository in-process.
  repo::OpenOptions repo_options(bool write = false);
  // init with kChunk; asserts success.
  void init_repo();
  // backup --json of `devices` (small diff storage); asserts exit 0 and returns the result object.
  nlohmann::json backup_ok(const std::vector<std::string>& devices, const std::vector<std::string>& extra = {});
  // A device image of `size` bytes: random data with a zero region, deterministic per seed.
  std::string make_device(const std::string& name, uint64_t size, uint64_t seed);
  // Writes `data` through the simulated module's tracked path.
  void sim_write(const std::string& device, uint64_t offset, const std::string& data);
  // Restores `device` of `generation` to a new file and returns its bytes.
  std::string restore_bytes(const std::string& generation, const std::string& device);
  // `sim show --json`.
  nlohmann::json sim_show();

  std::vector<std::string> diff_storage_args() const {
    return {"--diff-storage-size", "4M", "--diff-storage-limit", "16M"};
  }
};

// Records writes since the last good backup and answers which chunks changed.
struct ChangeLog {
  std::map<std::string, std::set<uint64_t>> chunks;  // device -> chunk indexes
  void add(const std::string& device, uint64_t offset, uint64_t length, uint64_t chunk);
  uint64_t bytes(const std::string& device, uint64_t chunk, uint64_t device_size) const;
};

std::string random_bytes(std::mt19937_64& rng, size_t n);

}  // namespace blkvault::test
