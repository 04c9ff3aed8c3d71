// repo/json_fields.h — integer fields of the repository's JSON files (config,
// manifests, key files, repair records), read without undefined behaviour.
//
// nlohmann::json's get<uint64_t>() of a float converts it with a cast, which is
// undefined for values out of range (3e83, found by fuzz_repo_config). These
// files are input from storage that may be damaged or hostile, so every integer
// field is read here: anything but an integer within T's range throws
// std::runtime_error naming the key, which the parsers turn into "damaged".
// Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace blkvault::repo {

template <class T>
T integer_field(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = j.at(key);
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (std::in_range<T>(u)) return static_cast<T>(u);
  } else if (v.is_number_integer()) {
    const auto i = v.get<int64_t>();
    if (std::in_range<T>(i)) return static_cast<T>(i);
  }
  throw std::runtime_error(std::string(key) + " is not an integer in range");
}

}  // namespace blkvault::repo
