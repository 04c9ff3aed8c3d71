#include "app/cli.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "app/commands.h"
#include "app/config_commands.h"
#include "app/core_commands.h"
#include "app/inspect_commands.h"
#include "app/key_commands.h"
#include "app/maintenance_commands.h"
#include "app/recovery_commands.h"
#include "app/repair_commands.h"
#include "app/run_commands.h"
#include "app/schedule_commands.h"
#include "app/sim_commands.h"

namespace blkvault::app {
namespace {

constexpr const char* kExitCodesHelp = R"(Exit status:
  0    success
  1    the operation failed (I/O error, full disk, device error, module refused)
  2    bad usage or input (option, device, generation id, config, repository path)
  3    verify, restore or repair found damaged data (repair: and did not repair it)
  4    the repository is locked by another process
  5    kernel module missing, wrong ABI version, or not root
  6    wrong passphrase, or the repository's key is missing
  7    backup: the backup committed, but the CBT audit found a write the CBT map missed;
       the device was read fully
  70   internal error (a bug: please report it)
  130  interrupted (SIGINT/SIGTERM); nothing partial was kept

Environment: BLKVAULT_REPO (--repo), BLKVAULT_MODULE (--module), BLKVAULT_PASSWORD (the passphrase),
BLKVAULT_PASSWORD_FILE, BLKVAULT_PASSWORD_COMMAND, BLKVAULT_KEY_FILE, BLKVAULT_CACHE_DIR.
S3 repositories: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION,
BLKVAULT_S3_CREDENTIALS_FILE (the keys, AWS credentials format, when those are not set),
BLKVAULT_S3_ADDRESSING (path|virtual), BLKVAULT_S3_CA_FILE, BLKVAULT_LOCK_STALE_S.
Documentation: docs/CLI.md, docs/OBJECT-STORAGE.md)";

// The one process-wide pointer the signal handler may touch.
CancelToken* g_cancel = nullptr;

extern "C" void on_signal(int sig) {
  if (g_cancel) g_cancel->request(sig);
}

void install_signal_handlers(CancelToken& cancel) {
  g_cancel = &cancel;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR and see the token
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

std::string self_exe(const char* argv0) {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(argv0) : p.string();
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App cli{"blkvault — incremental block-level backup of Linux block devices through the veeamblksnap "
               "kernel module, into a deduplicated, compressed repository."};
  cli.footer(kExitCodesHelp);
  cli.require_subcommand(1);
  cli.fallthrough();
  cli.option_defaults()->always_capture_default();

  OutputOptions oopt;
  std::string repo, module_spec = "/dev/veeamblksnap", state_dir;
  double lock_wait = 0;
  cli.add_option("-r,--repo", repo, "Repository: a directory, or s3:https://HOST[:PORT]/BUCKET[/PREFIX]")->envname("BLKVAULT_REPO");
  cli.add_option("--module", module_spec, "Kernel module: /dev/veeamblksnap, or sim:DIR for the simulation")
      ->envname("BLKVAULT_MODULE");
  cli.add_option("--state-dir", state_dir,
                 "Where blkvault records the snapshots it owns (default /var/lib/blkvault, or DIR/client for sim:DIR)");
  std::string password_file, password_command, key_file, cache_dir;
  cli.add_option("--password-file", password_file, "Read the repository passphrase from the first line of FILE")
      ->envname("BLKVAULT_PASSWORD_FILE");
  cli.add_option("--password-command", password_command, "Run CMD (by /bin/sh) and read the passphrase from its output")
      ->envname("BLKVAULT_PASSWORD_COMMAND");
  cli.add_option("--key-file", key_file, "The key file of a repository created with --key-mode keyfile")
      ->envname("BLKVAULT_KEY_FILE");
  cli.add_option("--cache-dir", cache_dir,
                 "Where the index of an encrypted or S3 repository is kept (default /var/cache/blkvault, or ~/.cache/blkvault)")
      ->envname("BLKVAULT_CACHE_DIR");
  std::string metrics_dir;
  cli.add_option("--metrics-dir", metrics_dir,
                 "Write Prometheus metrics for node_exporter's textfile collector into DIR (backup, run, verify)");
  cli.add_option("--lock-wait", lock_wait, "Seconds to wait for the repository lock (default: fail at once)")
      ->check(CLI::NonNegativeNumber);
  cli.add_flag("-q,--quiet", oopt.quiet, "No progress or informational messages");
  cli.add_flag("--json", oopt.json, "Print the result as one JSON object on stdout");
  cli.add_flag("--json-progress", oopt.json_progress, "Print progress as JSON lines on stderr");
  cli.add_flag("-v,--verbose", oopt.verbose, "Debug messages");

  CoreCommands core_cmds;
  core_cmds.add_to(cli);
  InspectCommands inspect_cmds;
  inspect_cmds.add_to(cli);
  KeyCommands key_cmds;
  key_cmds.add_to(cli);
  MaintenanceCommands maintenance_cmds;
  maintenance_cmds.add_to(cli);
  RecoveryCommands recovery_cmds;
  recovery_cmds.add_to(cli);
  RepairCommands repair_cmds;
  repair_cmds.add_to(cli);
  SimCommands sim_cmds;
  sim_cmds.add_to(cli);
  ConfigCommands config_cmds;
  config_cmds.add_to(cli);
  RunCommands run_cmds;
  run_cmds.add_to(cli);
  ScheduleCommands schedule_cmds;
  schedule_cmds.add_to(cli);

  cli.add_subcommand("version", "Print the version");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return cli.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    std::fprintf(stderr, "blkvault: %s (see 'blkvault --help')\n", msg.c_str());
    return kExitUsage;
  }

  Output out(oopt);
  CancelToken cancel;
  install_signal_handlers(cancel);
  Context ctx{out, cancel, repo, lock_wait, module_spec, state_dir};
  ctx.password_file = password_file;
  ctx.password_command = password_command;
  ctx.key_file = key_file;
  ctx.cache_dir = cache_dir;
  ctx.metrics_dir = metrics_dir;
  if (ctx.state_dir.empty()) {
    ctx.state_dir = module_spec.rfind("sim:", 0) == 0 ? module_spec.substr(4) + "/client" : "/var/lib/blkvault";
  }

  Status st;
  if (core_cmds.parsed()) {
    st = core_cmds.run(ctx, self_exe(argv[0]));
  } else if (inspect_cmds.parsed()) {
    st = inspect_cmds.run(ctx);
  } else if (key_cmds.parsed()) {
    st = key_cmds.run(ctx);
  } else if (maintenance_cmds.parsed()) {
    st = maintenance_cmds.run(ctx);
  } else if (recovery_cmds.parsed()) {
    st = recovery_cmds.run(ctx);
  } else if (repair_cmds.parsed()) {
    st = repair_cmds.run(ctx);
  } else if (sim_cmds.parsed()) {
    st = sim_cmds.run(ctx);
  } else if (config_cmds.parsed()) {
    st = config_cmds.run(ctx);
  } else if (run_cmds.parsed()) {
    st = run_cmds.run(ctx);
  } else if (schedule_cmds.parsed()) {
    st = schedule_cmds.run(ctx, self_exe(argv[0]));
  } else {
    out.result(fmt::format("blkvault {}", BLKVAULT_VERSION));
    out.result_json({{"version", BLKVAULT_VERSION}});
  }

  if (!st) {
    out.error(st.error());
    return exit_status_for(st.error().code());
  }
  return kExitOk;
}

}  // namespace blkvault::app
