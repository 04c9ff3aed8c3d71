// `blkvault init`: create an empty repository.
#include <fmt/format.h>

#include "app/commands.h"
#include "app/passphrase.h"
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
  if (opts.encryption == "none") {
    out.cipher = repo::Cipher::kNone;
  } else if (opts.encryption == "authenticated") {
    if (opts.cipher == "auto") {
      out.cipher = repo::preferred_cipher();
    } else if (auto c = repo::parse_cipher(opts.cipher); c && *c != repo::Cipher::kNone) {
      out.cipher = *c;
    } else {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("--cipher {}: must be auto, xchacha20-poly1305 or aes-256-gcm", opts.cipher));
    }
  } else {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("--encryption {}: must be authenticated or none", opts.encryption));
  }
  if (opts.key_mode != "repokey" && opts.key_mode != "keyfile") {
    return fail(ErrorCode::kInvalidArgument, fmt::format("--key-mode {}: must be repokey or keyfile", opts.key_mode));
  }
  out.key_mode = opts.key_mode;
  auto mem = parse_size(opts.kdf_mem);
  if (!mem) return fail(std::move(mem).error().wrap("--kdf-mem"));
  if (*mem < (64u << 10) || *mem > (4ull << 30) || opts.kdf_ops < 1 || opts.kdf_ops > 64) {
    return fail(ErrorCode::kInvalidArgument, "--kdf-mem must be from 64K to 4G and --kdf-ops from 1 to 64");
  }
  out.kdf.memlimit = *mem;
  out.kdf.opslimit = opts.kdf_ops;
  return out;
}

}  // namespace

Status cmd_init(Context& ctx, const InitOptions& opts) {
  BLKVAULT_TRY(require_repo_path(ctx));
  BLKVAULT_TRY_ASSIGN(repo::InitOptions options, check_options(opts));
  if (options.cipher != repo::Cipher::kNone) {
    if (options.key_mode == "keyfile") {
      if (ctx.key_file.empty()) {
        return fail(ErrorCode::kInvalidArgument, "--key-mode keyfile needs --key-file PATH (where to write the key)");
      }
      options.key_file = ctx.key_file;
    }
    options.cache_dir = ctx.cache_dir;
    auto pass = read_passphrase(ctx, "the new repository " + ctx.repo, /*confirm=*/true);
    if (!pass) {
      if (pass.error().code() != ErrorCode::kKey) return tl::unexpected(std::move(pass).error());
      return fail(ErrorCode::kInvalidArgument,
                  "init: an encrypted repository needs a passphrase: set BLKVAULT_PASSWORD, or use --password-file "
                  "or --password-command (or --encryption none for a repository anyone holding it can read)");
    }
    options.passphrase = *pass;
  }
  BLKVAULT_TRY(repo::init_repository(ctx.repo, options));  // its errors name the path
  BLKVAULT_TRY_ASSIGN(auto repository, open_repository(ctx, /*write=*/false));
  const repo::RepoConfig& c = repository->config();
  const std::string enc =
      c.cipher == repo::Cipher::kNone
          ? std::string("not encrypted")
          : fmt::format("encrypted with {}, key {}", repo::to_string(c.cipher),
                        c.key_mode == "keyfile" ? "in " + ctx.key_file : std::string("in the repository (repokey)"));
  ctx.out.result(fmt::format("created repository {} (id {}): chunks of {}, zstd level {}, packs of up to {}, {}",
                             ctx.repo, c.id, format_bytes(c.chunk_size), c.compression_level, format_bytes(c.pack_size),
                             enc));
  if (c.cipher != repo::Cipher::kNone) {
    ctx.out.note("keep the passphrase safe, and a paper backup of the key: blkvault key export");
  }
  ctx.out.result_json({{"repo", ctx.repo},
                       {"id", c.id},
                       {"format_version", c.format_version},
                       {"chunk_size", c.chunk_size},
                       {"compression_level", c.compression_level},
                       {"pack_size", c.pack_size},
                       {"created", c.created},
                       {"encryption", std::string(repo::to_string(c.cipher))},
                       {"key_mode", c.key_mode}});
  return {};
}

}  // namespace blkvault::app
