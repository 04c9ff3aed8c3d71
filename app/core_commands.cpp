#include "app/core_commands.h"

#include "app/job_metrics.h"
#include "app/cbt_audit.h"

namespace blkvault::app {

void CoreCommands::add_to(CLI::App& cli) {
  init_ = cli.add_subcommand("init", "Create a new, empty repository at --repo");
  init_->add_option("--chunk-size", init_opts_.chunk_size, "Chunk size, a power of two from 64K to 16M");
  init_->add_option("--compression-level,--compression", init_opts_.compression_level, "zstd level, 1 to 19");
  init_->add_option("--pack-size", init_opts_.pack_size, "Size at which a pack file is finished");
  init_->add_option("--encryption", init_opts_.encryption,
                    "authenticated (the default: chunks, manifests and names sealed with a key from your passphrase) "
                    "or none");
  init_->add_option("--cipher", init_opts_.cipher, "auto (AES-256-GCM with AES-NI, else XChaCha20-Poly1305), "
                                                   "xchacha20-poly1305 or aes-256-gcm");
  init_->add_option("--key-mode", init_opts_.key_mode,
                    "repokey (the wrapped key lives in the repository) or keyfile (in --key-file, outside it)");
  init_->add_option("--kdf-ops", init_opts_.kdf_ops, "Argon2id passes for the passphrase");
  init_->add_option("--kdf-mem", init_opts_.kdf_mem, "Argon2id memory for the passphrase");

  backup_ = cli.add_subcommand("backup", "Snapshot DEVICEs together and store what changed as a new generation");
  backup_->add_option("DEVICE", backup_opts_.devices, "Block devices (or image files with --module sim:DIR)")
      ->required();
  backup_->add_flag("--full", backup_opts_.full, "Read every block, whatever the change tracking says");
  backup_->add_flag("--partial", backup_opts_.partial,
                    "Commit the devices that succeeded when others fail (the generation is marked partial)");
  backup_->add_option("--diff-storage", backup_opts_.diff_storage_dir,
                      "Directory for the snapshot's difference storage (default <state-dir>/diff); not on a device "
                      "being backed up");
  backup_->add_option("--diff-storage-size", backup_opts_.diff_storage_size,
                      "Initial difference storage (default 1G, or the limit when smaller)");
  backup_->add_option("--diff-storage-limit", backup_opts_.diff_storage_limit,
                      "Most difference storage the snapshot may grow to");
  backup_->add_option("--metrics-job", backup_opts_.metrics_job,
                      "The job label (and file blkvault_NAME.prom) of the metrics written with --metrics-dir");
  // I/O limits (app/io_throttle.h, docs/ADMIN.md "Limiting backup I/O").
  backup_->add_option("--limit-read", backup_opts_.limit_read,
                      "Most MB/s (1 MB = 10^6 bytes) read from the snapshot, all devices together; auto[:MAX]: "
                      "adapt to the I/O pressure of the rest of the system (PSI), never above MAX");
  backup_->add_option("--limit-upload", backup_opts_.limit_upload,
                      "Most MB/s (1 MB = 10^6 bytes) sent to an S3 repository, all parallel uploads together");
  backup_->add_option("--psi-file", backup_opts_.psi_file,
                      "The PSI file --limit-read auto watches (default /proc/pressure/io; a cgroup's io.pressure)");
  cbt_audit_option_ = backup_->add_option("--cbt-audit", cbt_audit_,
                      "Re-read PERCENT (0-100, default 1; at least 16, at most 1024 chunks) of the chunks the CBT "
                      "calls unchanged and compare them with the previous generation; 0 turns it off");
  cbt_audit_seed_option_ = backup_->add_option("--cbt-audit-seed", cbt_audit_seed_,
                      "Seed of the audit's sample (default random; each run prints its seed), to replay a run");

  restore_ = cli.add_subcommand("restore", "Write a device's image as of a generation to a file or block device");
  restore_->add_option("--generation,-g", restore_opts_.generation, "Generation id, or 'latest'");
  restore_->add_option("--device,-d", restore_opts_.device, "The device, as named at backup (see 'blkvault list')")
      ->required();
  restore_->add_option("--to,-t", restore_opts_.to, "New file, or an existing file or block device")->required();
  restore_->add_flag("--force", restore_opts_.force, "Overwrite a target that is not empty");
  restore_->add_flag("--delta", restore_opts_.delta,
                     "Read the target and write only the chunks that differ (a rollback); uses the CBT when the "
                     "target is the tracked device itself");

  demo_ = cli.add_subcommand("demo", "Run the main job end to end on the simulated module and check the result");
  demo_->add_option("--dir", demo_opts_.dir, "Work directory (must be empty; default: a new temporary directory)");
  demo_->add_option("--size", demo_opts_.size, "Size of the demo device (at least 32M)");
  demo_->add_flag("--keep", demo_opts_.keep, "Keep the work directory afterwards");
}

bool CoreCommands::parsed() const {
  for (const CLI::App* c : {init_, backup_, restore_, demo_}) {
    if (c && c->parsed()) return true;
  }
  return false;
}

Status CoreCommands::run(Context& ctx, const std::string& self_exe) {
  if (init_->parsed()) return cmd_init(ctx, init_opts_);
  if (backup_->parsed()) {
    if (cbt_audit_option_->count() > 0) {
      BLKVAULT_TRY_ASSIGN(backup_opts_.cbt_audit_percent, parse_cbt_audit_percent(cbt_audit_));
    }
    if (cbt_audit_seed_option_->count() > 0) {
      BLKVAULT_TRY_ASSIGN(backup_opts_.cbt_audit_seed, parse_cbt_audit_seed(cbt_audit_seed_));
    }
    return cmd_backup_with_metrics(ctx, backup_opts_);
  }
  if (restore_->parsed()) return restore_opts_.delta ? cmd_restore_delta(ctx, restore_opts_) : cmd_restore(ctx, restore_opts_);
  return cmd_demo(ctx, demo_opts_, self_exe);
}

}  // namespace blkvault::app
