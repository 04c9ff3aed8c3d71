// tests/repo/repo_support.h — the repository tests' fixture: simulated devices
// that change between generations, backups of them through the engine, and
// restores compared byte for byte.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "repo/repository.h"
#include "temp_dir.h"

namespace blkvault::repo {

constexpr uint64_t kChunk = 64 << 10;

// A Storage that passes every call to another: test wrappers derive from it
// and override only the calls they watch or break.
class ForwardingStorage : public Storage {
 public:
  explicit ForwardingStorage(std::unique_ptr<Storage> inner) : inner_(std::move(inner)) {}
  std::string description() const override { return inner_->description(); }
  Status put(std::string_view n, std::span<const uint8_t> d) override { return inner_->put(n, d); }
  Result<std::unique_ptr<Writer>> create(std::string_view n) override { return inner_->create(n); }
  Result<std::vector<uint8_t>> get(std::string_view n) override { return inner_->get(n); }
  Result<std::vector<uint8_t>> get_range(std::string_view n, uint64_t o, uint64_t l) override {
    return inner_->get_range(n, o, l);
  }
  Result<uint64_t> size(std::string_view n) override { return inner_->size(n); }
  Result<bool> exists(std::string_view n) override { return inner_->exists(n); }
  Result<std::vector<std::string>> list(std::string_view p) override { return inner_->list(p); }
  Result<std::vector<std::string>> list_unpublished(std::string_view p) override { return inner_->list_unpublished(p); }
  Status remove(std::string_view n) override { return inner_->remove(n); }

 private:
  std::unique_ptr<Storage> inner_;
};

class MemSink final : public RestoreSink {
 public:
  explicit MemSink(uint64_t size) : data_(size, 0xEE) {}  // poison: every byte must be written or zeroed
  Status write_at(uint64_t offset, std::span<const uint8_t> d) override {
    std::lock_guard g(mu_);
    if (offset + d.size() > data_.size()) return fail(ErrorCode::kInternal, "write past the end");
    std::memcpy(data_.data() + offset, d.data(), d.size());
    return {};
  }
  Status zero(uint64_t offset, uint64_t length) override {
    std::lock_guard g(mu_);
    if (offset + length > data_.size()) return fail(ErrorCode::kInternal, "zero past the end");
    std::memset(data_.data() + offset, 0, length);
    return {};
  }
  const std::vector<uint8_t>& data() const { return data_; }

 private:
  std::mutex mu_;
  std::vector<uint8_t> data_;
};

// A device image that changes between generations, tracking which chunks changed.
struct SimDevice {
  std::string name;
  std::vector<uint8_t> bytes;
  std::set<uint64_t> dirty;

  void mark(uint64_t off, uint64_t len) {
    for (uint64_t c = off / kChunk; c <= (off + len - 1) / kChunk; ++c) dirty.insert(c);
  }
  void mutate(std::mt19937_64& rng, int rounds) {
    for (int r = 0; r < rounds; ++r) {
      const uint64_t len = 1 + rng() % (3 * kChunk);
      const uint64_t off = rng() % bytes.size();
      const uint64_t n = std::min<uint64_t>(len, bytes.size() - off);
      switch (rng() % 4) {
        case 0:  // random data
          for (uint64_t i = 0; i < n; ++i) bytes[off + i] = static_cast<uint8_t>(rng());
          break;
        case 1:  // zeros
          std::memset(bytes.data() + off, 0, n);
          break;
        case 2: {  // a copy of another region: dedup material
          const uint64_t src = (rng() % bytes.size()) / kChunk * kChunk;
          const uint64_t m = std::min<uint64_t>(n, bytes.size() - src);
          std::memmove(bytes.data() + off, bytes.data() + src, m);
          break;
        }
        default:  // compressible text
          for (uint64_t i = 0; i < n; ++i) bytes[off + i] = "blkvault "[(off + i) % 9];
      }
      mark(off, n);
    }
  }
};

class RepositoryTest : public ::testing::Test {
 protected:
  // A local directory, or the address another backend's test set (remote_).
  std::string repo_path() const { return remote_.empty() ? dir_ / "repo" : remote_; }
  // Where this "host" caches the index of a remote repository.
  std::string cache_dir() const { return dir_ / "cache"; }

  void init(uint64_t pack_size = 1 << 20) {
    InitOptions o;
    o.chunk_size = kChunk;
    o.pack_size = pack_size;
    o.cache_dir = cache_dir();
    auto st = init_repository(repo_path(), o);
    ASSERT_TRUE(st) << "init: " << st.error().message();
  }

  std::unique_ptr<Repository> open(bool write) {
    OpenOptions o;
    o.write = write;
    o.cache_dir = cache_dir();
    auto r = Repository::open(repo_path(), o);
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return r ? std::move(*r) : nullptr;
  }

  // Backs up devices: full when `full` or no previous generation, else only dirty chunks.
  Result<GenerationInfo> backup(Repository& repo, std::vector<SimDevice*> devs, bool full, size_t threads = 2) {
    BLKVAULT_TRY_ASSIGN(auto w, repo.begin_generation("testhost", "test"));
    for (auto* d : devs) {
      BLKVAULT_TRY_ASSIGN(auto last, repo.last_good(d->name));
      const bool incremental = !full && last.has_value();
      BLKVAULT_TRY_ASSIGN(DeviceWriter * dw, w->add_device(d->name, d->bytes.size(), incremental));
      std::vector<uint64_t> todo;
      const uint64_t count = (d->bytes.size() + kChunk - 1) / kChunk;
      if (incremental) {
        todo.assign(d->dirty.begin(), d->dirty.end());
      } else {
        for (uint64_t c = 0; c < count; ++c) todo.push_back(c);
      }
      std::atomic<size_t> next{0};
      std::atomic<bool> bad{false};
      auto work = [&] {
        for (size_t i; (i = next++) < todo.size();) {
          const uint64_t off = todo[i] * kChunk;
          const uint64_t n = std::min<uint64_t>(kChunk, d->bytes.size() - off);
          if (!dw->put(todo[i], std::span(d->bytes).subspan(off, n))) bad = true;
        }
      };
      std::vector<std::thread> ts;
      for (size_t t = 0; t < threads; ++t) ts.emplace_back(work);
      for (auto& t : ts) t.join();
      if (bad) return fail(ErrorCode::kInternal, "put failed");
      dw->set_mode(incremental ? "incremental" : "full", incremental ? "" : "test", d->dirty.size() * kChunk);
      dw->set_baseline("baseline-of-" + d->name);
    }
    BLKVAULT_TRY_ASSIGN(auto info, w->commit(false));
    for (auto* d : devs) d->dirty.clear();
    return info;
  }

  void expect_restores(Repository& repo, GenerationId gen, const SimDevice& d, const std::vector<uint8_t>& expect) {
    auto img = repo.device_image(gen, d.name);
    ASSERT_TRUE(img) << img.error().message();
    MemSink sink(img->size_bytes);
    auto st = repo.restore(*img, sink, 3, nullptr, {});
    ASSERT_TRUE(st) << st.error().message();
    ASSERT_EQ(sink.data().size(), expect.size());
    ASSERT_TRUE(sink.data() == expect) << d.name << " generation " << gen << " differs";
  }

  test::TempDir dir_;
  std::string remote_;
};

}  // namespace blkvault::repo
