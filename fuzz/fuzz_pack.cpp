// A pack file's trailer and blob walk on arbitrary bytes.
#include <cstdlib>

#include "fuzz/mem_storage.h"
#include "repo/pack.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blkvault;
  fuzz::MemStorage storage;
  storage.files["packs/aa/pack"] = std::vector<uint8_t>(data, data + size);
  auto index = repo::read_pack_index(storage, "packs/aa/pack");
  if (index) {
    for (const auto& e : *index) {
      if (e.offset + e.length > size) std::abort();  // entries must lie inside the file
    }
  }
  auto scanned = repo::scan_pack(storage, "packs/aa/pack");
  if (scanned) {
    for (const auto& e : *scanned) {
      if (e.offset + e.length > size) std::abort();
    }
  }
  return 0;
}
