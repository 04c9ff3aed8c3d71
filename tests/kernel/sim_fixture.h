// tests/kernel/sim_fixture.h — SimKernelTest: a simulated module in a temporary
// directory, with helpers to make self-identifying device images and diff storage.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/file_io.h"
#include "kernel/sim_module.h"

namespace blkvault::kernel {

inline uint64_t test_seed() {
  if (const char* env = std::getenv("BLKVAULT_TEST_SEED")) return std::strtoull(env, nullptr, 0);
  return std::random_device{}();
}

class SimKernelTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kMinimumSectors = 2048;  // 1 MiB diff_storage_minimum for tests

  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "blkvault-sim-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    sim_ = open_sim();
  }
  void TearDown() override {
    sim_.reset();
    std::filesystem::remove_all(root_);
  }

  std::string state_dir() const { return root_ + "/state"; }
  std::string path(const std::string& name) const { return root_ + "/" + name; }

  std::unique_ptr<SimModule> open_sim() {
    SimOptions options;
    options.diff_storage_minimum_sectors = kMinimumSectors;
    auto m = SimModule::open(state_dir(), options);
    EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().message());
    return m ? std::move(*m) : nullptr;
  }

  // A device image whose every 512-byte sector starts with "<name> sector <n>".
  std::string make_device(const std::string& name, uint64_t size_bytes) {
    std::string p = path(name);
    std::vector<uint8_t> bytes(size_bytes, 0);
    for (uint64_t s = 0; s * 512 < size_bytes; ++s) {
      std::string tag = name + " sector " + std::to_string(s);
      std::copy(tag.begin(), tag.end(), bytes.begin() + static_cast<ptrdiff_t>(s * 512));
    }
    write_bytes(p, bytes);
    return p;
  }

  static void write_bytes(const std::string& p, const std::vector<uint8_t>& bytes) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(pwrite_full(fd, bytes, 0, p).has_value());
    ::close(fd);
  }

  static std::vector<uint8_t> file_bytes(const std::string& p) {
    auto s = read_file(p);
    EXPECT_TRUE(s.has_value());
    return s ? std::vector<uint8_t>(s->begin(), s->end()) : std::vector<uint8_t>{};
  }

  // Writes behind the simulation's back.
  static void outside_write(const std::string& p, uint64_t offset, const std::vector<uint8_t>& data) {
    int fd = ::open(p.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(pwrite_full(fd, data, offset, p).has_value());
    ::close(fd);
  }

  std::string make_storage(const std::string& name, uint64_t size_bytes) {
    std::string p = path(name);
    int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::posix_fallocate(fd, 0, static_cast<off_t>(size_bytes)), 0);
    ::close(fd);
    return p;
  }

  DevId dev(const std::string& p) {
    auto d = sim_->device_id(p);
    EXPECT_TRUE(d.has_value()) << (d ? "" : d.error().message());
    return d.value_or(DevId{});
  }

  // create + the initial event + append `storage_bytes` of diff storage.
  Uuid create_with_storage(std::vector<DevId> devices, uint64_t storage_bytes, const std::string& storage_name = "") {
    auto id = sim_->create_snapshot(devices);
    EXPECT_TRUE(id.has_value()) << (id ? "" : id.error().message());
    if (!id) return {};
    auto ev = sim_->wait_event(*id, 0);
    EXPECT_TRUE(ev.has_value() && ev->has_value());
    std::string name = storage_name.empty() ? "storage-" + std::to_string(storage_counter_++) : storage_name;
    auto extents = sim_->map_storage_file(make_storage(name, storage_bytes));
    EXPECT_TRUE(extents.has_value());
    if (extents) {
      EXPECT_TRUE(sim_->append_storage(*id, extents->storage_dev, extents->ranges).has_value());
    }
    return *id;
  }

  Uuid take_new(std::vector<DevId> devices, uint64_t storage_bytes = 4 << 20) {
    Uuid id = create_with_storage(devices, storage_bytes);
    Status st = sim_->take_snapshot(id);
    EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().message());
    return id;
  }

  CbtInfo info(DevId d) {
    auto all = sim_->tracked_devices();
    EXPECT_TRUE(all.has_value());
    if (all) {
      for (const CbtInfo& i : *all)
        if (i.dev == d) return i;
    }
    ADD_FAILURE() << "device " << to_string(d) << " is not tracked";
    return {};
  }

  std::vector<uint8_t> cbt_map(DevId d) {
    std::vector<uint8_t> map(info(d).block_count);
    Status st = sim_->read_cbt_map(d, 0, map);
    EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().message());
    return map;
  }

  DevId image_of(const Uuid& id, DevId original) {
    auto images = sim_->snapshot_images(id);
    EXPECT_TRUE(images.has_value());
    if (images) {
      for (const ImageInfo& i : *images)
        if (i.original == original) return i.image;
    }
    return {};
  }

  Result<std::vector<uint8_t>> read_image(DevId image, uint64_t chunk = 1 << 20) {
    BLKVAULT_TRY_ASSIGN(auto reader, sim_->open_image(image));
    std::vector<uint8_t> out(reader->size_bytes());
    for (uint64_t off = 0; off < out.size(); off += chunk) {
      uint64_t n = std::min<uint64_t>(chunk, out.size() - off);
      BLKVAULT_TRY(reader->read_at(off, {out.data() + off, n}));
    }
    return out;
  }

  static int err_of(const Status& st) { return st ? 0 : st.error().sys_errno(); }
  template <class T>
  static int err_of(const Result<T>& r) {
    return r ? 0 : r.error().sys_errno();
  }

  std::string root_;
  std::unique_ptr<SimModule> sim_;
  int storage_counter_ = 0;
};

}  // namespace blkvault::kernel
