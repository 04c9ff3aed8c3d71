// app/commands.h — one function per command. Each returns a Status; run_cli()
// prints a failure as one line and maps its code to the exit status.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/output.h"
#include "common/cancel.h"
#include "common/error.h"
#include "common/rate_limiter.h"

namespace blkvault::repo {
class Repository;
}

namespace blkvault::app {

struct BackupObservation;  // app/backup_report.h

// Options shared by every command.
struct Context {
  Output& out;
  CancelToken& cancel;
  std::string repo;          // --repo / BLKVAULT_REPO
  double lock_wait_s = 0;    // --lock-wait
  std::string module_spec;   // --module / BLKVAULT_MODULE: /dev/veeamblksnap or sim:DIR
  std::string state_dir;     // --state-dir: where snapshot ownership records live
  // Encrypted repositories (app/passphrase.h, docs/SECURITY.md).
  std::string password_file;     // --password-file / BLKVAULT_PASSWORD_FILE
  std::string password_command;  // --password-command / BLKVAULT_PASSWORD_COMMAND
  std::string key_file;          // --key-file / BLKVAULT_KEY_FILE (keyfile mode)
  std::string cache_dir;         // --cache-dir / BLKVAULT_CACHE_DIR (their index)
  std::string metrics_dir;       // --metrics-dir: Prometheus textfiles (app/job_metrics.h); "" for none
  // backup --limit-upload / [limits] upload: passed to Repository::open
  // (object storage only). Null: no limit.
  std::shared_ptr<RateLimiter> upload_limiter;
};

struct InitOptions {
  std::string chunk_size = "1M";
  int compression_level = 3;
  std::string pack_size = "64M";
  std::string encryption = "authenticated";  // or "none"
  std::string cipher = "auto";               // auto, xchacha20-poly1305, aes-256-gcm
  std::string key_mode = "repokey";          // or "keyfile" (with --key-file)
  uint64_t kdf_ops = 3;                      // Argon2id passes
  std::string kdf_mem = "64M";               // Argon2id memory
};
Status cmd_init(Context& ctx, const InitOptions& opts);

struct BackupOptions {
  std::vector<std::string> devices;
  std::string diff_storage_dir;      // empty: default next to the state dir
  std::string diff_storage_size;     // empty: 1G, or the limit when that is smaller
  std::string diff_storage_limit = "16G";
  bool full = false;
  bool partial = false;
  // I/O limits (app/io_throttle.h); empty: none. MB/s with MB = 10^6 bytes.
  std::string limit_read;    // "20", "auto", "auto:200"
  std::string limit_upload;  // "50"; with ctx.upload_limiter set, that limiter is reported instead
  std::string psi_file;      // empty: /proc/pressure/io
  // The CBT audit (app/cbt_audit.h): percent of the unchanged chunks re-read
  // per incremental device (0: off), and the seed (none: a random one).
  double cbt_audit_percent = 1.0;  // cbt::kDefaultAuditPercent
  std::optional<uint64_t> cbt_audit_seed;
  // Seams for `blkvault run` (app/run_commands.h); `backup` leaves them empty.
  repo::Repository* repository = nullptr;  // an open writer (its lock held) to use instead of opening ctx.repo
  std::function<Status()> after_snapshot;  // runs once the snapshot is taken; a failure ends the backup uncommitted
  std::function<void(uint64_t generation)> on_commit;  // told the committed generation's id
  BackupObservation* observer = nullptr;  // when set: told what each device did (also on failure)
  std::string metrics_job = "backup";     // --metrics-job: the job label of `backup`'s metrics
};
Status cmd_backup(Context& ctx, const BackupOptions& opts);

struct RestoreOptions {
  std::string generation = "latest";
  std::string device;
  std::string to;
  bool force = false;
  bool delta = false;  // write only what differs (app/cmd_restore_delta.cpp); implies --force
};
Status cmd_restore(Context& ctx, const RestoreOptions& opts);
Status cmd_restore_delta(Context& ctx, const RestoreOptions& opts);

struct ListOptions {
  std::string device;
};
Status cmd_list(Context& ctx, const ListOptions& opts);

struct VerifyOptions {
  bool data = false;
  std::string generation;  // empty: all
  // Rolling verify (app/verify_selection.h); each needs data. Empty: not given.
  std::string subset;      // "N/M", "P%" or a SIZE
  std::string seed;        // for a random subset
  std::string older_than;  // a duration ("7d")
  std::string budget;      // a duration ("30m")
};
Status cmd_verify(Context& ctx, const VerifyOptions& opts);

struct StatusOptions {
  bool packs = false;  // list every pack with its last data verification
};
Status cmd_status(Context& ctx, const StatusOptions& opts);
Status cmd_cleanup(Context& ctx);

struct DemoOptions {
  std::string dir;       // empty: a new temporary directory, removed afterwards
  std::string size = "256M";
  bool keep = false;
};
Status cmd_demo(Context& ctx, const DemoOptions& opts, const std::string& self_exe);

}  // namespace blkvault::app
