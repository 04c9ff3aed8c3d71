#include "app/repo_access.h"

#include "app/passphrase.h"

namespace blkvault::app {

Status require_repo_path(const Context& ctx) {
  if (ctx.repo.empty()) {
    return fail(ErrorCode::kInvalidArgument, "no repository given: use --repo PATH or set BLKVAULT_REPO");
  }
  return {};
}

namespace {

Result<std::unique_ptr<repo::Repository>> open_with(Context& ctx, bool write, bool shared, const std::string& paper_key,
                                                   bool backups_alongside = false) {
  BLKVAULT_TRY(require_repo_path(ctx));
  repo::OpenOptions options;
  options.write = write;
  options.shared = shared;
  options.backups_alongside = backups_alongside;
  options.lock_wait_s = ctx.lock_wait_s;
  options.log = &ctx.out;
  options.key_file = ctx.key_file;
  options.cache_dir = ctx.cache_dir;
  options.upload_limiter = ctx.upload_limiter;
  options.passphrase = [&ctx]() { return read_passphrase(ctx, "repository " + ctx.repo, /*confirm=*/false); };
  options.paper_key = paper_key;
  // The repository's errors already name its path and say what to do.
  return repo::Repository::open(ctx.repo, options);
}

}  // namespace

Result<std::unique_ptr<repo::Repository>> open_repository(Context& ctx, bool write, const std::string& paper_key) {
  return open_with(ctx, write, /*shared=*/false, paper_key);
}

Result<std::unique_ptr<repo::Repository>> open_repository_for_backup(Context& ctx) {
  return open_with(ctx, /*write=*/true, /*shared=*/true, "");
}

Result<std::unique_ptr<repo::Repository>> open_repository_for_maintenance(Context& ctx) {
  return open_with(ctx, /*write=*/true, /*shared=*/false, "", /*backups_alongside=*/true);
}

}  // namespace blkvault::app
