// app/verify_selection.h — the rolling-verify options of `verify --data`
// (--subset, --seed, --older-than, --budget) turned into a repo::PackSelection,
// and the sentence that says what was selected. Pure functions; any thread.
//
// Every failure is kInvalidArgument (exit status 2) with a message naming the
// option, checked before the repository is opened.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "app/commands.h"
#include "repo/repository.h"

namespace blkvault::app {

struct VerifySelection {
  repo::PackSelection select;
  bool random = false;  // --subset P% or SIZE: the seed matters (and is printed)
};

// `drawn_seed` is the seed of a random subset given no --seed (the caller
// draws it, so it can be printed and replayed).
Result<VerifySelection> parse_verify_selection(const VerifyOptions& opts, uint64_t drawn_seed);

// "part 2 of 7 by pack name hash, not verified in the last 7d" (empty: no filter).
std::string describe_selection(const VerifyOptions& opts, const VerifySelection& sel);

// A --budget or --older-than value: parse_duration's forms, or "NNNms".
Result<int64_t> parse_duration_ms(const std::string& text);

}  // namespace blkvault::app
