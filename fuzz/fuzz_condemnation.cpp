// A gc condemnation (repo/condemned.h) and its ".backups" file on arbitrary
// bytes: the first half is the list, the second the backups.
#include "fuzz/mem_storage.h"
#include "repo/condemned.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blkvault;
  fuzz::MemStorage storage;
  const size_t half = size / 2;
  storage.files["condemned/00000000000000000001"] = std::vector<uint8_t>(data, data + half);
  storage.files["condemned/00000000000000000001.backups"] = std::vector<uint8_t>(data + half, data + size);
  auto all = repo::load_condemnations(storage);
  if (all && all->size() != 1) __builtin_trap();
  // A readable one publishes and reads back the same.
  if (all && !all->front().damage && all->front().backups) {
    fuzz::MemStorage again;
    repo::Condemnation c = all->front();
    if (!repo::publish_condemnation(again, c) || !repo::publish_backups(again, c, *c.backups)) __builtin_trap();
    auto back = repo::load_condemnations(again);
    if (!back || back->size() != 1 || back->front().packs != c.packs || back->front().manifests != c.manifests ||
        back->front().backups != c.backups) {
      __builtin_trap();
    }
  }
  return 0;
}
