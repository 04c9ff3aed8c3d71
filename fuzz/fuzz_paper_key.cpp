// The paper backup of a master key (typed back by a user): errors only; what
// parses re-prints to text that parses to the same key.
#include <cstdlib>
#include <string>

#include "repo/crypto.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blkvault::repo;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto key = parse_paper_key(text, "fuzz-repo");
  if (!key) return 0;
  auto again = parse_paper_key(paper_key(**key, "fuzz-repo"), "fuzz-repo");
  if (!again || std::string_view(reinterpret_cast<const char*>((*again)->data()), (*again)->size()) !=
                    std::string_view(reinterpret_cast<const char*>((*key)->data()), (*key)->size())) {
    std::abort();
  }
  return 0;
}
