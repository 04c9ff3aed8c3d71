// `blkvault init`: create an empty repository.
#include <fmt/format.h>

#include "app/commands.h"
#include "app/repo_access.h"
#include "repo/repository.h"

namespace blkvault::app {
namespace {

constexpr uint64_t kMinChunk = 64ull << 10;
constexpr uint64_t kMaxChunk = 16ull << 20;

Result<repo::InitOptions> check_options(const InitOptions& opts) {
  repo::InitOptions out;
  auto chunk = parse_size(opts.chunk_size);
  if (!chunk) return fail(std::move(chunk).error().wrap("--chunk-size"));
  if (*chunk < kMinChunk || *chunk > kMaxChunk || (*chunk & (*chunk - 1)) != 0) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("--chunk-size {}: must be a power of two from 64K to 16M", opts.chunk_size));
  }
  out.chunk_size = *chunk;
  if (opts.compression_level < 1 || opts.compression_level > 19) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("--compression-level {}: must be from 1 to 19", opts.compression_level));
  }
  out.compression_level = opts.compression_level;
  auto pack = parse_size(opts.pack_size);
  if (!pack) return fail(std::move(pack).error().wrap("--pack-size"));
  if (*pack < *chunk || *pack > (4ull << 30)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("--pack-size {}: must be from the chunk size ({}) to 4G", opts.pack_size,
                            format_bytes(*chunk)));
  }
  out.pack_size = *pack;
  return out;
}

}  // namespace

Status cmd_init(Context& ctx, const InitOptions& opts) {
  BLKVAULT_TRY(require_repo_path(ctx));
  BLKVAULT_TRY_ASSIGN(repo::InitOptions options, check_options(opts));
  BLKVAULT_TRY(repo::init_repository(ctx.repo, options));  // its errors name the path
  BLKVAULT_TRY_ASSIGN(auto repository, open_repository(ctx, /*write=*/false));
  const repo::RepoConfig& c = repository->config();
  ctx.out.result(fmt::format("created repository {} (id {}): chunks of {}, zstd level {}, packs of up to {}", ctx.repo,
                             c.id, format_bytes(c.chunk_size), c.compression_level, format_bytes(c.pack_size)));
  ctx.out.result_json({{"repo", ctx.repo},
                       {"id", c.id},
                       {"format_version", c.format_version},
                       {"chunk_size", c.chunk_size},
                       {"compression_level", c.compression_level},
                       {"pack_size", c.pack_size},
                       {"created", c.created}});
  return {};
}

}  // namespace blkvault::app
