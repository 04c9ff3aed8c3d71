#include "app/cbt_audit.h"

#include <charconv>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "cbt/audit_sample.h"
#include "common/direct_read.h"
#include "repo/chunk_codec.h"

namespace blkvault::app {

Result<repo::CbtAudit> run_cbt_audit(repo::Repository& repository, const CbtAuditRequest& req,
                                     std::span<const cbt::ByteExtent> changed, const ReadAt& read,
                                     const CancelToken& cancel) {
  const uint64_t chunk = repository.config().chunk_size;
  const cbt::AuditSample sample = cbt::sample_unchanged_chunks(
      changed, req.size_bytes, chunk, req.percent, cbt::audit_device_seed(req.run_seed, req.position));
  repo::CbtAudit audit;
  audit.seed = req.run_seed;
  audit.percent = req.percent;
  audit.against = req.parent;
  audit.unchanged_chunks = sample.unchanged_chunks;
  BLKVAULT_TRY_ASSIGN(auto stored, repository.chunk_ids(req.parent, req.device, sample.chunks));

  AlignedBytes buf(chunk);  // read like the backup's own reads (common/direct_read.h)
  const repo::ChunkKey& key = repository.config().chunk_key;
  for (size_t i = 0; i < sample.chunks.size(); ++i) {
    BLKVAULT_TRY(cancel.check());
    const uint64_t offset = sample.chunks[i] * chunk;
    const uint64_t length = std::min(chunk, req.size_bytes - offset);
    std::span<uint8_t> data(buf.data(), length);
    if (Status st = read(offset, data); !st) {
      if (st.error().code() == ErrorCode::kCancelled) return fail(std::move(st).error());
      return fail(std::move(st).error().wrap("CBT audit"));
    }
    ++audit.sampled_chunks;
    audit.sampled_bytes += length;
    const bool same = repo::is_all_zero(data) ? !stored[i].has_value()
                                              : stored[i].has_value() && *stored[i] == repo::chunk_id(key, data);
    if (same) continue;
    if (!audit.missed.empty() && audit.missed.back().offset_bytes + audit.missed.back().length_bytes == offset) {
      audit.missed.back().length_bytes += length;
    } else {
      audit.missed.push_back({offset, length});
    }
  }
  return audit;
}

std::string describe_ranges(const std::vector<repo::CbtAudit::Range>& ranges) {
  constexpr size_t kShown = 4;
  std::string text = "bytes ";
  for (size_t i = 0; i < ranges.size() && i < kShown; ++i) {
    text += fmt::format("{}{}..{}", i == 0 ? "" : ", ", ranges[i].offset_bytes,
                        ranges[i].offset_bytes + ranges[i].length_bytes);
  }
  if (ranges.size() > kShown) text += fmt::format(" and {} more", ranges.size() - kShown);
  return text;
}

Result<double> parse_cbt_audit_percent(std::string_view text, std::string_view what) {
  auto bad = [&] {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("{} '{}': expected a percentage from 0 to 100 (0 turns the audit off)", what, text));
  };
  // Digits with an optional fraction: no sign, exponent, "inf" or "nan".
  size_t dots = 0, digits = 0;
  for (char c : text) {
    if (c == '.') {
      ++dots;
    } else if (c >= '0' && c <= '9') {
      ++digits;
    } else {
      return bad();
    }
  }
  if (digits == 0 || dots > 1) return bad();
  double v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || !(v >= 0 && v <= 100)) return bad();
  return v;
}

Result<uint64_t> parse_cbt_audit_seed(std::string_view text) {
  int base = 10;
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    base = 16;
    digits.remove_prefix(2);
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
  if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size()) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("--cbt-audit-seed '{}': expected a 64-bit number (decimal, or hex with 0x)", text));
  }
  return v;
}

}  // namespace blkvault::app
