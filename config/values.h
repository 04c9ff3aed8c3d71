// config/values.h — the small value syntaxes of the configuration file: sizes
// ("512M"), durations ("30s", "1h30m") and the "did you mean" lookup for
// misspelt keys. Pure functions; safe from any thread.
//
// Errors are kInvalidArgument with a message that reads after "<key>: ".
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/error.h"

namespace blkvault::config {

// "65536", "64K", "512M", "1G", "1.5G", "2T", "4GiB" (units are powers of 1024,
// case-insensitive, an optional "B"/"iB" after the letter) -> bytes. A fraction
// must come out as a whole number of bytes.
Result<uint64_t> parse_size(std::string_view text);

// "90", "30s", "5m", "2h", "1d", "1h30m" -> seconds. A bare number is seconds;
// each part is a whole number followed by s, m, h or d, largest unit first.
Result<uint64_t> parse_duration(std::string_view text);

// I/O limits (backup --limit-read/--limit-upload, [limits] in the config):
// "20", "2.5" -> MB/s, where 1 MB = 10^6 bytes -> bytes a second. A positive
// decimal number (no sign, no exponent) of at most 1000000 (1 TB/s).
Result<double> parse_rate(std::string_view text);

// A read limit: a rate as above, "auto" (adaptive to I/O pressure, no
// maximum) or "auto:RATE" (adaptive, never above RATE).
struct ReadLimit {
  double max_bytes_per_s = 0;  // 0: no maximum (plain "auto")
  bool adaptive = false;
};
Result<ReadLimit> parse_read_limit(std::string_view text);

// The shortest exact spelling parse_size() reads back: "16G", "512M", "4097".
std::string format_size(uint64_t bytes);

// The candidate closest to `word` by edit distance if it is close enough to be
// a likely typo (at most 2 edits, and fewer than half of the word), else "".
std::string closest_match(std::string_view word, std::span<const std::string_view> candidates);

}  // namespace blkvault::config
