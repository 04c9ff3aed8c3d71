// The repository's config file on arbitrary bytes.
#include "fuzz/mem_storage.h"
#include "repo/repository_impl.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blkvault;
  fuzz::MemStorage storage;
  storage.files["config"] = std::vector<uint8_t>(data, data + size);
  auto c = repo::read_config(storage, "/fuzz");
  if (c && (c->chunk_size < (64u << 10) || (c->chunk_size & (c->chunk_size - 1)) != 0)) __builtin_trap();
  return 0;
}
