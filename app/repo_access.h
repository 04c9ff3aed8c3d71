// app/repo_access.h — how commands reach the repository: the --repo check and
// Repository::open with the context's lock wait and logger.
// Thread-safety: stateless.
#pragma once

#include <memory>

#include "app/commands.h"
#include "repo/repository.h"

namespace blkvault::app {

// kInvalidArgument "no repository given: use --repo PATH or set BLKVAULT_REPO"
// when ctx.repo is empty.
Status require_repo_path(const Context& ctx);

// Opens ctx.repo (for writing: takes the writer lock, waiting ctx.lock_wait_s).
// Errors are the repository's (kNotFound, kLocked, kUnsupported, ...), which name the path.
// `paper_key`: open an encrypted repository with the master key's paper backup
// instead of a passphrase (key import).
Result<std::unique_ptr<repo::Repository>> open_repository(Context& ctx, bool write, const std::string& paper_key = "");
// For a backup: writing, but on object storage with a shared hold (a backup
// marker, repo::OpenOptions::shared), so many hosts back up at once.
Result<std::unique_ptr<repo::Repository>> open_repository_for_backup(Context& ctx);
// For prune and gc: the exclusive lock, which on object storage lets backups
// run alongside (repo::OpenOptions::backups_alongside; gc condemns before it
// deletes).
Result<std::unique_ptr<repo::Repository>> open_repository_for_maintenance(Context& ctx);

}  // namespace blkvault::app
