#include "app/backup_support.h"

#include <fstream>
#include <random>

namespace blkvault::test {

uint64_t test_seed() {
  if (const char* s = std::getenv("BLKVAULT_TEST_SEED")) return std::stoull(s);
  return std::random_device{}();
}

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

CliRun BackupCliTest::bv(const std::vector<std::string>& args, const std::string& stdin_path,
                         const std::vector<std::string>& extra_env) {
  // Repositories are encrypted by default: every CLI test runs encrypted.
  std::vector<std::string> env = {"BLKVAULT_REPO=" + repo_, "BLKVAULT_MODULE=" + sim_,
                                  "BLKVAULT_PASSWORD=" + std::string(kPassphrase), "BLKVAULT_CACHE_DIR=" + dir_ / "cache"};
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  return run_blkvault(args, env, stdin_path);
}

repo::OpenOptions BackupCliTest::repo_options(bool write) {
  repo::OpenOptions o;
  o.write = write;
  o.cache_dir = dir_ / "cache";
  o.passphrase = []() -> Result<std::string> { return std::string(kPassphrase); };
  return o;
}

void BackupCliTest::init_repo() {
  auto r = bv({"init", "--chunk-size", std::to_string(kChunk), "--kdf-ops", "1", "--kdf-mem", "64K"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
}

nlohmann::json BackupCliTest::backup_ok(const std::vector<std::string>& devices, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--json", "backup"};
  for (const auto& a : diff_storage_args()) args.push_back(a);
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), devices.begin(), devices.end());
  auto r = bv(args);
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "backup --json printed no JSON: " << e.what() << "\n" << r.out << r.err;
    return nlohmann::json::object();
  }
}

std::string BackupCliTest::make_device(const std::string& name, uint64_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data = random_bytes(rng, size);
  // A zero region (never stored) and a repeated one (deduplicated).
  std::fill(data.begin() + static_cast<long>(size / 4), data.begin() + static_cast<long>(size / 2), '\0');
  std::copy(data.begin(), data.begin() + static_cast<long>(kChunk), data.begin() + static_cast<long>(size / 2));
  std::string path = dir_ / name;
  std::ofstream(path, std::ios::binary) << data;
  return path;
}

void BackupCliTest::sim_write(const std::string& device, uint64_t offset, const std::string& data) {
  static int n = 0;
  std::string in = dir_ / ("write-" + std::to_string(n++));
  std::ofstream(in, std::ios::binary) << data;
  auto r = bv({"-q", "sim", "write", device, "--offset", std::to_string(offset)}, in);
  ASSERT_EQ(r.exit_status, 0) << r.err;
}

std::string BackupCliTest::restore_bytes(const std::string& generation, const std::string& device) {
  static int n = 0;
  std::string to = dir_ / ("restored-" + std::to_string(n++));
  auto r = bv({"-q", "restore", "--generation", generation, "--device", device, "--to", to});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  std::string bytes = read_whole(to);
  std::remove(to.c_str());
  return bytes;
}

nlohmann::json BackupCliTest::sim_show() {
  auto r = bv({"--json", "sim", "show"});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

void ChangeLog::add(const std::string& device, uint64_t offset, uint64_t length, uint64_t chunk) {
  for (uint64_t c = offset / chunk; c <= (offset + length - 1) / chunk; ++c) chunks[device].insert(c);
}

uint64_t ChangeLog::bytes(const std::string& device, uint64_t chunk, uint64_t device_size) const {
  auto it = chunks.find(device);
  if (it == chunks.end()) return 0;
  uint64_t total = 0;
  for (uint64_t c : it->second) total += std::min(chunk, device_size - c * chunk);
  return total;
}

}  // namespace blkvault::test
