// repo/index_check.h — does the index (a cache) still say what the manifests
// (the truth) say? SQLite has no page checksums: a flipped byte inside a row
// of index.sqlite changes a value silently (a generation's time, a device's
// size, which chunk sits at which index). These checks catch that:
//   * verify: every manifest the index depends on decodes; none on disk is
//     unreadable into the index; each committed generation's record and each
//     complete device's chunk map equal what its manifest chain gives;
//   * restore: the image about to be written has the map and size its
//     manifest chain gives, so an index error never becomes wrong bytes.
// Costs: verify reads every manifest and compares every generation's map
// (O(generations × chunks per device) in memory); restore reads the chain of
// the one generation.
//
// Thread-safety: like the Repository methods that call them; REQUIRES notes
// say when impl.mu must be held.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "repo/repository.h"

namespace blkvault::repo {

// Appends one sentence per disagreement to `problems`. `gens` are the
// committed generations verify checks (from the index). REQUIRES: impl.mu held.
Status check_index_against_manifests(Repository::Impl& impl, const std::vector<GenerationInfo>& gens,
                                     bool all_generations, std::vector<std::string>& problems);

// kCorrupt naming the first offset where `image` (from the index) differs
// from what the manifests record. When the manifests cannot be read the index
// is the only record left: success (verify reports the manifests).
Status check_image_against_manifests(Repository::Impl& impl, const DeviceImage& image);

}  // namespace blkvault::repo
