#include "config/values.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

namespace blkvault::config {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = lower(c);
  return out;
}

// Reads the decimal digits at text[*i...] into *value; false on overflow or when
// there are none.
bool read_digits(std::string_view text, size_t* i, uint64_t* value, size_t* count) {
  uint64_t v = 0;
  size_t start = *i;
  while (*i < text.size() && text[*i] >= '0' && text[*i] <= '9') {
    uint64_t d = static_cast<uint64_t>(text[*i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
    ++*i;
  }
  *value = v;
  *count = *i - start;
  return *count > 0;
}

}  // namespace

Result<double> parse_rate(std::string_view text) {
  auto bad = [&] {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("'{}' is not a rate: expected a positive number of MB/s (1 MB = 10^6 bytes)", text));
  };
  size_t i = 0, n = 0;
  uint64_t whole = 0;
  if (!read_digits(text, &i, &whole, &n) || whole > 1'000'000) return bad();
  double value = static_cast<double>(whole);
  if (i < text.size() && text[i] == '.') {
    double scale = 0.1;
    const size_t start = ++i;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < 9; ++i, scale /= 10) {
      value += (text[i] - '0') * scale;
    }
    if (i == start) return bad();
  }
  if (i != text.size() || value <= 0 || value > 1'000'000) return bad();
  return value * 1e6;
}

Result<ReadLimit> parse_read_limit(std::string_view text) {
  ReadLimit limit;
  if (text == "auto") {
    limit.adaptive = true;
    return limit;
  }
  std::string_view rate = text;
  if (text.rfind("auto:", 0) == 0) {
    limit.adaptive = true;
    rate = text.substr(5);
  }
  auto r = parse_rate(rate);
  if (!r) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("'{}' is not a read limit: expected a positive number of MB/s (1 MB = 10^6 bytes), "
                            "'auto' or 'auto:MAX'",
                            text));
  }
  limit.max_bytes_per_s = *r;
  return limit;
}

Result<uint64_t> parse_size(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("invalid size '{}': {}", text, why));
  };
  constexpr std::string_view kExpected = "expected a number with an optional unit K, M, G or T (powers of 1024)";
  size_t i = 0, n = 0;
  uint64_t whole = 0;
  if (!read_digits(text, &i, &whole, &n)) return bad(kExpected);
  // The fraction is kept exactly as digits/10^k so "1.5G" is exact.
  uint64_t frac = 0, frac_scale = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (i - start >= 9) return bad("too many decimal places");
      frac = frac * 10 + static_cast<uint64_t>(text[i] - '0');
      frac_scale *= 10;
      ++i;
    }
    if (i == start) return bad(kExpected);
  }
  std::string unit = lowered(text.substr(i));
  int shift = 0;
  if (!unit.empty()) {
    static constexpr std::string_view kLetters = "kmgt";
    size_t pos = kLetters.find(unit[0]);
    if (unit == "b") {
      shift = 0;
    } else if (pos != std::string_view::npos && (unit.size() == 1 || unit.substr(1) == "b" || unit.substr(1) == "ib")) {
      shift = 10 * static_cast<int>(pos + 1);
    } else {
      return bad(kExpected);
    }
  }
  uint64_t mult = uint64_t{1} << shift;
  if (whole > UINT64_MAX / mult) return bad("too large");
  uint64_t value = whole * mult;
  if (frac != 0) {
    // frac < 10^9 and mult <= 2^40: the product needs more than 64 bits.
    __extension__ using U128 = unsigned __int128;
    U128 part = static_cast<U128>(frac) * mult;
    if (part % frac_scale != 0) return bad("not a whole number of bytes");
    uint64_t add = static_cast<uint64_t>(part / frac_scale);
    if (value > UINT64_MAX - add) return bad("too large");
    value += add;
  }
  return value;
}

Result<uint64_t> parse_duration(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("invalid duration '{}': {}", text, why));
  };
  constexpr std::string_view kExpected = "expected seconds, or numbers with units d, h, m, s such as '90s', '5m' or '1h30m'";
  if (text.empty()) return bad(kExpected);
  size_t i = 0;
  uint64_t total = 0;
  uint64_t last_unit = UINT64_MAX;
  while (i < text.size()) {
    uint64_t v = 0;
    size_t n = 0;
    if (!read_digits(text, &i, &v, &n)) return bad(kExpected);
    uint64_t unit_s = 1;
    if (i == text.size()) {
      if (last_unit != UINT64_MAX) return bad("a number without a unit after a unit");
    } else {
      switch (lower(text[i])) {
        case 's': unit_s = 1; break;
        case 'm': unit_s = 60; break;
        case 'h': unit_s = 3600; break;
        case 'd': unit_s = 86400; break;
        default: return bad(kExpected);
      }
      ++i;
    }
    if (unit_s >= last_unit) return bad("units must go from largest to smallest, each once");
    last_unit = unit_s;
    if (v > (UINT64_MAX - total) / unit_s) return bad("too large");
    total += v * unit_s;
  }
  return total;
}

std::string format_size(uint64_t bytes) {
  static constexpr std::string_view kUnits = "KMGT";
  for (int i = static_cast<int>(kUnits.size()); i >= 1; --i) {
    uint64_t mult = uint64_t{1} << (10 * i);
    if (bytes != 0 && bytes % mult == 0) return fmt::format("{}{}", bytes / mult, kUnits[static_cast<size_t>(i - 1)]);
  }
  return fmt::format("{}", bytes);
}

namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t subst = prev[j - 1] + (lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string closest_match(std::string_view word, std::span<const std::string_view> candidates) {
  std::string_view best;
  size_t best_distance = SIZE_MAX;
  for (std::string_view c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  if (best_distance == 0) return word == best ? "" : std::string(best);  // differs only in case
  if (best_distance > 2 || best_distance * 2 >= std::max(word.size(), size_t{2})) return "";
  return std::string(best);
}

}  // namespace blkvault::config
