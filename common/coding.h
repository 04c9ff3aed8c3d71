// common/coding.h — fixed-width little-endian encoding at a byte pointer.
//
// Every on-disk structure blkvault writes (docs/FORMAT.md) is encoded field by
// field with these, never by copying structs, so the format does not depend on
// the compiler's layout or the host's byte order.
// REQUIRES: p points at least sizeof(T) valid bytes.
#pragma once

#include <cstdint>

namespace blkvault {

template <class T>
inline void put_le(uint8_t* p, T v) {
  for (unsigned i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i));
}

template <class T>
inline T get_le(const uint8_t* p) {
  uint64_t v = 0;
  for (unsigned i = sizeof(T); i-- > 0;) v = v << 8 | p[i];
  return static_cast<T>(v);
}

}  // namespace blkvault
