// fuzz/mem_storage.h — an in-memory repo::Storage, so fuzz targets can feed
// bytes to the readers that take a Storage without touching the disk.
#pragma once

#include <map>
#include <string>

#include "repo/storage.h"

namespace blkvault::fuzz {

class MemStorage final : public repo::Storage {
 public:
  std::map<std::string, std::vector<uint8_t>, std::less<>> files;

  std::string description() const override { return "memory"; }
  Status put(std::string_view name, std::span<const uint8_t> data) override {
    files[std::string(name)] = {data.begin(), data.end()};
    return {};
  }
  Result<std::unique_ptr<Writer>> create(std::string_view) override {
    return fail(ErrorCode::kUnsupported, "not in the fuzzer");
  }
  Result<std::vector<uint8_t>> get(std::string_view name) override {
    auto it = files.find(name);
    if (it == files.end()) return fail(ErrorCode::kNotFound, std::string(name) + " not found");
    return it->second;
  }
  Result<std::vector<uint8_t>> get_range(std::string_view name, uint64_t offset, uint64_t length) override {
    auto it = files.find(name);
    if (it == files.end()) return fail(ErrorCode::kNotFound, std::string(name) + " not found");
    if (offset > it->second.size() || length > it->second.size() - offset) {
      return fail(ErrorCode::kCorrupt, std::string(name) + " is too short");
    }
    return std::vector<uint8_t>(it->second.begin() + static_cast<long>(offset),
                                it->second.begin() + static_cast<long>(offset + length));
  }
  Result<uint64_t> size(std::string_view name) override {
    auto it = files.find(name);
    if (it == files.end()) return fail(ErrorCode::kNotFound, std::string(name) + " not found");
    return it->second.size();
  }
  Result<bool> exists(std::string_view name) override { return files.count(std::string(name)) != 0; }
  Result<std::vector<std::string>> list(std::string_view prefix) override {
    std::vector<std::string> out;
    for (const auto& [n, _] : files) {
      if (n.compare(0, prefix.size(), prefix) == 0) out.push_back(n);
    }
    return out;
  }
  Result<std::vector<std::string>> list_unpublished(std::string_view) override { return std::vector<std::string>{}; }
  Status remove(std::string_view name) override {
    files.erase(std::string(name));
    return {};
  }
};

}  // namespace blkvault::fuzz
