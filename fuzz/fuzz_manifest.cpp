// Manifest::decode on arbitrary bytes: never crashes; what decodes re-encodes
// to bytes that decode to the same manifest.
#include <cstdlib>

#include "repo/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blkvault::repo;
  auto m = Manifest::decode(std::span(data, size), "fuzz");
  if (!m) return 0;
  auto again = Manifest::decode(m->encode(), "fuzz re-encoded");
  if (!again || again->deltas != m->deltas || again->generation.devices.size() != m->generation.devices.size()) {
    std::abort();
  }
  return 0;
}
