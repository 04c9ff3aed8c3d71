#include "app/verify_selection.h"

#include <charconv>
#include <cstdlib>
#include <vector>

#include <fmt/format.h>

#include "app/output.h"
#include "config/values.h"

namespace blkvault::app {
namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

Result<uint32_t> parse_u32(std::string_view s) {
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (!all_digits(s) || ec != std::errc() || p != s.data() + s.size()) {
    return fail(ErrorCode::kInvalidArgument, "not a number");
  }
  return v;
}

Status parse_subset(const std::string& text, VerifySelection& sel) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("--subset {}: {}", text, why));
  };
  constexpr std::string_view kForms =
      "expected N/M (the N-th of M parts, e.g. 1/7), P% (a random share, e.g. 10%) or a SIZE (random packs up to "
      "it, e.g. 50G)";
  const auto slash = text.find('/');
  if (slash != std::string::npos) {
    auto n = parse_u32(std::string_view(text).substr(0, slash));
    auto m = parse_u32(std::string_view(text).substr(slash + 1));
    if (!n || !m) return bad(kForms);
    if (*m == 0) return bad("the number of parts must be at least 1");
    if (*n < 1 || *n > *m) return bad(fmt::format("the part must be from 1 to {} (N/M: the N-th of M parts)", *m));
    sel.select.part = *n;
    sel.select.parts = *m;
    return {};
  }
  if (!text.empty() && text.back() == '%') {
    const std::string num = text.substr(0, text.size() - 1);
    const auto dot = num.find('.');
    const bool ok = dot == std::string::npos ? all_digits(num)
                                             : all_digits(num.substr(0, dot)) && all_digits(num.substr(dot + 1));
    if (!ok) return bad(kForms);
    const double p = std::strtod(num.c_str(), nullptr);
    if (!(p > 0 && p <= 100)) return bad("a percentage must be more than 0 and at most 100");
    sel.select.percent = p;
    sel.random = true;
    return {};
  }
  auto size = parse_size(text);
  if (!size) return bad(kForms);
  if (*size == 0) return bad("a size must be more than 0");
  sel.select.bytes = *size;
  sel.random = true;
  return {};
}

}  // namespace

Result<int64_t> parse_duration_ms(const std::string& text) {
  if (text.size() > 2 && text.ends_with("ms") && all_digits(std::string_view(text).substr(0, text.size() - 2))) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size() - 2, v);
    if (ec == std::errc()) return v;
  }
  BLKVAULT_TRY_ASSIGN(uint64_t s, config::parse_duration(text));
  if (s > static_cast<uint64_t>(INT64_MAX / 1000)) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("invalid duration '{}': too large", text));
  }
  return static_cast<int64_t>(s) * 1000;
}

Result<VerifySelection> parse_verify_selection(const VerifyOptions& opts, uint64_t drawn_seed) {
  VerifySelection sel;
  const std::vector<std::pair<std::string_view, const std::string*>> given = {
      {"--subset", &opts.subset}, {"--older-than", &opts.older_than}, {"--budget", &opts.budget}, {"--seed", &opts.seed}};
  for (const auto& [name, value] : given) {
    if (!value->empty() && !opts.data) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("{} needs --data (it chooses which packs' data to read)", name));
    }
  }
  if (!opts.subset.empty()) BLKVAULT_TRY(parse_subset(opts.subset, sel));
  if (!opts.seed.empty()) {
    if (!sel.random) return fail(ErrorCode::kInvalidArgument, "--seed only applies to a random --subset (P% or SIZE)");
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(opts.seed.data(), opts.seed.data() + opts.seed.size(), v);
    if (!all_digits(opts.seed) || ec != std::errc()) {
      return fail(ErrorCode::kInvalidArgument, fmt::format("--seed {}: expected a whole number", opts.seed));
    }
    sel.select.seed = v;
  } else {
    sel.select.seed = drawn_seed;
  }
  if (!opts.older_than.empty()) {
    auto ms = parse_duration_ms(opts.older_than);
    if (!ms) return fail(std::move(ms).error().wrap("--older-than"));
    sel.select.older_than_ms = *ms;
  }
  if (!opts.budget.empty()) {
    auto ms = parse_duration_ms(opts.budget);
    if (!ms) return fail(std::move(ms).error().wrap("--budget"));
    if (*ms == 0) return fail(ErrorCode::kInvalidArgument, "--budget: 0 leaves no time (give a duration such as 30m)");
    sel.select.budget_ms = *ms;
  }
  return sel;
}

std::string describe_selection(const VerifyOptions& opts, const VerifySelection& sel) {
  std::vector<std::string> parts;
  const auto& s = sel.select;
  if (s.parts != 0) parts.push_back(fmt::format("part {} of {} by pack name hash", s.part, s.parts));
  if (s.percent > 0) parts.push_back(fmt::format("a random {} of the packs (seed {})", opts.subset, s.seed));
  if (s.bytes > 0) parts.push_back(fmt::format("random packs up to {} (seed {})", opts.subset, s.seed));
  if (s.older_than_ms) parts.push_back(fmt::format("not verified in the last {}", opts.older_than));
  if (s.budget_ms) parts.push_back(fmt::format("least recently verified first for at most {}", opts.budget));
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace blkvault::app
