#include "app/run_commands.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "app/exit_codes.h"
#include "app/hook_runner.h"
#include "app/job_log.h"
#include "app/job_metrics.h"
#include "app/metrics.h"
#include "app/maintenance_commands.h"
#include "app/repo_access.h"
#include "common/file_io.h"
#include "config/values.h"
#include "repo/repository.h"
#include "repo/s3_storage.h"

namespace blkvault::app {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

HookCommand hook_command(const config::Command& c) { return HookCommand{c.argv, c.shell}; }

// The stdout a command printed through an Output of its own: its --json
// object, read back after each step.
class Capture {
 public:
  Capture() : file_(::open_memstream(&buf_, &len_)) {}
  ~Capture() {
    if (file_) std::fclose(file_);
    std::free(buf_);
  }
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;
  std::FILE* file() const { return file_ ? file_ : stdout; }
  // What was written since the last take.
  std::string take() {
    if (!file_) return "";
    std::fflush(file_);
    std::string s(buf_ + taken_, len_ - taken_);
    taken_ = len_;
    return s;
  }

 private:
  char* buf_ = nullptr;
  size_t len_ = 0;
  size_t taken_ = 0;
  std::FILE* file_;
};

json parse_or_null(const std::string& text) {
  if (text.empty()) return nullptr;
  try {
    return json::parse(text);
  } catch (const std::exception&) {
    return nullptr;
  }
}

// The per-job lock: <state-dir>/jobs/JOB.lock, an flock held for the whole
// run, with the holder's pid and start time in it. nullopt with `holder` set
// when the previous run still holds it.
Result<std::optional<UniqueFd>> take_job_lock(const std::string& state_dir, const std::string& job,
                                              std::string* holder) {
  const std::string dir = state_dir + "/jobs";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(Error::from_errno("creating " + dir, ec.value()));
  const std::string path = dir + "/" + job + ".lock";
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return fail_errno("locking " + path);
    auto text = read_file(path);
    *holder = text && !text->empty() ? *text : "a process that has not yet said who it is";
    while (!holder->empty() && holder->back() == '\n') holder->pop_back();
    return std::optional<UniqueFd>();
  }
  std::string me = fmt::format("pid {}, started {}", ::getpid(), format_now_rfc3339());
  if (::ftruncate(fd.get(), 0) != 0) return fail_errno("truncating " + path);
  BLKVAULT_TRY(pwrite_full(fd.get(), {reinterpret_cast<const uint8_t*>(me.data()), me.size()}, 0, path));
  return std::optional<UniqueFd>(std::move(fd));
}

Error cancelled(const CancelToken& cancel) {
  const int sig = cancel.signal_number();
  std::string name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
  return Error(ErrorCode::kCancelled, "interrupted by " + name);
}

class JobRun {
 public:
  JobRun(Context& ctx, const config::Config& config, const config::JobConfig& job)
      : ctx_(ctx),
        config_(config),
        job_(job),
        inner_out_(OutputOptions{ctx.out.options().quiet, /*json=*/true, ctx.out.options().json_progress,
                                 ctx.out.options().verbose},
                   capture_.file(), stderr),
        jctx_{inner_out_, ctx.cancel, config.repository.path, static_cast<double>(job.lock_wait_s),
              job.module_spec, config.state_dir} {
    jctx_.cache_dir = ctx.cache_dir;
    jctx_.password_file = ctx.password_file;
    jctx_.password_command = ctx.password_command;
    jctx_.key_file = ctx.key_file.empty() ? config.repository.key_file : ctx.key_file;
    // The command line and the environment come first, then the config file.
    if (jctx_.password_file.empty() && jctx_.password_command.empty() && std::getenv("BLKVAULT_PASSWORD") == nullptr) {
      jctx_.password_file = config.repository.password_file;
    }
    // The S3 keys: the environment's, else the config's credentials file
    // (read by repo/s3_client.cpp through this variable; set before any thread starts).
    if (!config.repository.credentials_file.empty() && std::getenv("BLKVAULT_S3_CREDENTIALS_FILE") == nullptr) {
      ::setenv("BLKVAULT_S3_CREDENTIALS_FILE", config.repository.credentials_file.c_str(), 1);
    }
  }

  Status execute();

 private:
  Status work();
  Status backup();
  Status retention();
  Status post_snapshot(bool cancellable);
  // `cancellable`: SIGINT/SIGTERM kill it; not for the hooks that undo or report (post-snapshot after a
  // failed snapshot, post), which still have their timeout.
  Status hook(const char* name, const config::Command& command, std::vector<std::string> env = {},
              bool cancellable = true);
  void post_hook();
  // The on-success or on-failure command (`error` set: a failure), told the
  // outcome; `message` is the outcome line as logged ("success: …").
  void notify(const std::optional<Error>& error, const std::string& message);
  void write_metrics(const std::optional<Error>& error);
  std::vector<std::string> common_env(const char* hook) const;
  std::string success_text() const;
  void print_result(const Status& st);

  Context& ctx_;
  const config::Config& config_;
  const config::JobConfig& job_;
  Capture capture_;
  Output inner_out_;  // what the backup and prune steps print: JSON, captured
  Context jctx_;      // the job's repository, module, lock wait, through inner_out_
  const Clock::time_point t0_ = Clock::now();
  const std::string started_ = format_now_rfc3339();
  std::optional<JobLog> log_;
  std::unique_ptr<repo::Repository> repository_;
  bool pre_ran_ = false;
  bool post_snapshot_ran_ = false;
  std::optional<uint64_t> generation_;
  double committed_s_ = 0;  // Unix time of the commit (for the metrics)
  bool backup_started_ = false;
  BackupObservation observed_;
  json backup_json_ = nullptr;
  json prune_json_ = nullptr;
  json hooks_json_ = json::array();
  std::optional<Error> first_error_;
};

std::vector<std::string> JobRun::common_env(const char* hook) const {
  std::string devices;
  for (const auto& d : job_.devices) devices += (devices.empty() ? "" : " ") + d;
  return {"BLKVAULT_JOB=" + job_.name, std::string("BLKVAULT_HOOK=") + hook, "BLKVAULT_CONFIG=" + config_.file,
          "BLKVAULT_REPO=" + config_.repository.path, "BLKVAULT_DEVICES=" + devices};
}

// Runs one hook (when configured): its output and how it ended go to the log;
// a failure is an error naming the hook.
Status JobRun::hook(const char* name, const config::Command& command, std::vector<std::string> env,
                    bool cancellable) {
  if (command.empty()) return {};
  const std::string label = fmt::format("{} hook", name);
  HookRun how;
  how.env = common_env(name);
  how.env.insert(how.env.end(), env.begin(), env.end());
  how.timeout_ms = job_.hooks.timeout_s * 1000;
  how.cancel = cancellable ? &ctx_.cancel : nullptr;
  const HookCommand cmd = hook_command(command);
  auto r = run_hook(cmd, how);
  if (!r) {
    log_->line(fmt::format("{} {} could not be started: {}", label, cmd.describe(), r.error().message()));
    hooks_json_.push_back({{"hook", name}, {"exit_status", nullptr}, {"error", r.error().message()}});
    return fail(std::move(r).error().wrap(fmt::format("starting the {} {}", label, cmd.describe())));
  }
  log_->hook_output(label, r->output);
  log_->line(fmt::format("{} {} {} in {:.2f}s", label, cmd.describe(), r->outcome(), r->seconds));
  hooks_json_.push_back({{"hook", name},
                         {"exit_status", r->exit_status},
                         {"timed_out", r->timed_out},
                         {"duration_s", r->seconds}});
  if (r->cancelled) return fail(cancelled(ctx_.cancel));
  if (!r->ok()) return fail(ErrorCode::kIo, fmt::format("{} {} {}", label, cmd.describe(), r->outcome()));
  return {};
}

Status JobRun::post_snapshot(bool cancellable) {
  post_snapshot_ran_ = true;
  return hook("post-snapshot", job_.hooks.post_snapshot, {}, cancellable);
}

Status JobRun::backup() {
  BackupOptions b;
  b.devices = job_.devices;
  b.diff_storage_dir = job_.diff_storage.device.empty() ? job_.diff_storage.dir : job_.diff_storage.device;
  b.diff_storage_size = std::to_string(job_.diff_storage.size_bytes);
  b.diff_storage_limit = std::to_string(job_.diff_storage.limit_bytes);
  b.limit_read = job_.limits.read;
  b.limit_upload = job_.limits.upload;
  if (b.limit_read.rfind("auto", 0) == 0) b.psi_file = job_.limits.psi_file;
  b.repository = repository_.get();
  b.after_snapshot = [this] { return post_snapshot(/*cancellable=*/true); };
  b.on_commit = [this](uint64_t generation) {
    generation_ = generation;
    committed_s_ = unix_now_seconds();
  };
  b.observer = &observed_;
  backup_started_ = true;
  b.cbt_audit_percent = job_.cbt_audit_percent;
  Status st = cmd_backup(jctx_, b);
  backup_json_ = parse_or_null(capture_.take());
  if (!st && pre_ran_ && !post_snapshot_ran_ && !job_.hooks.post_snapshot.empty()) {
    // No snapshot was taken, but pre did its part: undo it all the same. Its
    // failure is logged; the backup's error is the one reported.
    log_->line("no snapshot was taken: running the post-snapshot hook all the same");
    (void)post_snapshot(/*cancellable=*/false);
  }
  return st;
}

Status JobRun::retention() {
  if (!job_.retention) return {};
  if (ctx_.cancel.cancelled()) return fail(cancelled(ctx_.cancel));
  const auto& r = *job_.retention;
  PruneOptions p;
  p.policy.last = static_cast<int>(r.keep_last);
  p.policy.hourly = static_cast<int>(r.keep_hourly);
  p.policy.daily = static_cast<int>(r.keep_daily);
  p.policy.weekly = static_cast<int>(r.keep_weekly);
  p.policy.monthly = static_cast<int>(r.keep_monthly);
  p.policy.yearly = static_cast<int>(r.keep_yearly);
  p.gc = r.gc;
  if (repo::is_remote_repository(jctx_.repo)) {
    // The backup's shared hold lets other hosts back up meanwhile; prune and gc
    // take the exclusive lock as maintenance (other hosts' backups go on).
    repository_.reset();
    auto opened = open_repository_for_maintenance(jctx_);
    if (!opened) return fail(std::move(opened).error().wrap("retention"));
    repository_ = std::move(*opened);
  }
  p.repository = repository_.get();
  Status st = cmd_prune(jctx_, p);
  prune_json_ = parse_or_null(capture_.take());
  if (!st) return fail(std::move(st).error().wrap("retention"));
  return {};
}

Status JobRun::work() {
  // The upload limit is the repository's (retention's uploads too); the backup reports it.
  if (auto rate = config::parse_rate(job_.limits.upload); rate && repo::is_remote_repository(jctx_.repo)) {
    jctx_.upload_limiter = std::make_shared<RateLimiter>(*rate);
  }
  auto opened = open_repository_for_backup(jctx_);
  if (!opened) return fail(std::move(opened).error());
  repository_ = std::move(*opened);
  if (!job_.hooks.pre.empty()) {
    if (Status st = hook("pre", job_.hooks.pre); !st) {
      return fail(Error(st.error().code(), st.error().message() + "; no snapshot was taken", st.error().sys_errno()));
    }
    pre_ran_ = true;
  }
  // A CBT audit finding (exit status 7) comes with a good, fully read
  // generation: retention still runs, and the finding is the job's outcome.
  Status backed_up = backup();
  if (!backed_up && backed_up.error().code() != ErrorCode::kCbtAudit) return backed_up;
  BLKVAULT_TRY(retention());
  return backed_up;
}

void JobRun::post_hook() {
  const bool ok = !first_error_.has_value();
  std::vector<std::string> env = {std::string("BLKVAULT_STATUS=") + (ok ? "success" : "failure"),
                                  "BLKVAULT_GENERATION=" + (generation_ ? std::to_string(*generation_) : ""),
                                  "BLKVAULT_ERROR=" + (ok ? "" : first_error_->message())};
  Status st = hook("post", job_.hooks.post, env, /*cancellable=*/false);
  if (!st && ok) {
    std::string why = st.error().message();
    if (generation_) why += fmt::format(" (the backup itself succeeded: generation {})", *generation_);
    first_error_ = Error(st.error().code(), why);
  }
}

void JobRun::notify(const std::optional<Error>& error, const std::string& message) {
  const bool ok = !error.has_value();
  const char* name = ok ? "on-success" : "on-failure";
  const config::Command& command = ok ? job_.report.on_success : job_.report.on_failure;
  if (command.empty()) return;
  const int status = ok ? 0 : exit_status_for(error->code());
  const std::string why = ok ? "" : error->message();
  json j = {{"job", job_.name},
            {"status", ok ? "success" : "failure"},
            {"error", ok ? json(nullptr) : json(why)},
            {"exit_status", status},
            {"message", message},
            {"generation", generation_ ? json(*generation_) : json(nullptr)},
            {"started", started_},
            {"duration_s", std::chrono::duration<double>(Clock::now() - t0_).count()},
            {"host", host_name()},
            {"config", config_.file},
            {"repository", config_.repository.path},
            {"devices", job_.devices},
            {"log_file", job_.report.log_file.empty() ? json(nullptr) : json(job_.report.log_file)},
            {"backup", backup_json_}};
  HookRun how;
  how.env = common_env(name);
  how.env.push_back(std::string("BLKVAULT_STATUS=") + (ok ? "success" : "failure"));
  how.env.push_back("BLKVAULT_GENERATION=" + (generation_ ? std::to_string(*generation_) : ""));
  how.env.push_back("BLKVAULT_ERROR=" + why);
  how.env.push_back("BLKVAULT_EXIT_STATUS=" + std::to_string(status));
  how.env.push_back("BLKVAULT_MESSAGE=" + message);
  how.env.push_back("BLKVAULT_LOG_FILE=" + job_.report.log_file);
  how.stdin_text = j.dump() + "\n";
  how.timeout_ms = job_.hooks.timeout_s * 1000;
  const HookCommand cmd = hook_command(command);
  auto r = run_hook(cmd, how);
  if (!r) {
    std::string problem =
        fmt::format("the {} command {} could not be started: {}", name, cmd.describe(), r.error().message());
    log_->line(problem);
    ctx_.out.log(LogLevel::kWarning, fmt::format("job {}: {}", job_.name, problem));
    return;
  }
  log_->hook_output(fmt::format("{} command", name), r->output);
  log_->line(fmt::format("{} command {} {} in {:.2f}s", name, cmd.describe(), r->outcome(), r->seconds));
  if (!r->ok()) {
    ctx_.out.log(LogLevel::kWarning,
                 fmt::format("job {}: the {} command {} {}", job_.name, name, cmd.describe(), r->outcome()));
  }
}

// The job's metrics file (docs/METRICS.md), when a metrics directory is set. A
// failure to write it is logged and printed as a warning: the run's outcome
// stands (and the metrics going stale is what the freshness alert catches).
void JobRun::write_metrics(const std::optional<Error>& error) {
  const std::string& dir = ctx_.metrics_dir.empty() ? config_.metrics.textfile_dir : ctx_.metrics_dir;
  if (dir.empty()) return;
  RunMetrics m;
  m.job = job_.name;
  m.devices = job_.devices;
  m.repository = config_.repository.path;
  m.exit_status = error ? exit_status_for(error->code()) : 0;
  m.finished_s = unix_now_seconds();
  m.duration_s = std::chrono::duration<double>(Clock::now() - t0_).count();
  m.generation = generation_;
  m.committed_s = committed_s_;
  m.backup = backup_started_ ? &observed_ : nullptr;
  std::string problem;
  if (repository_) {
    auto figures = repository_figures(*repository_);
    if (figures) {
      m.figures = *figures;
    } else {
      problem = "metrics: " + figures.error().message();
    }
  }
  if (Status st = write_run_metrics(dir, m); !st) problem = st.error().message();
  if (problem.empty()) return;
  log_->line(problem);
  ctx_.out.log(LogLevel::kWarning, fmt::format("job {}: {}", job_.name, problem));
}

std::string JobRun::success_text() const {
  std::string text = generation_ ? fmt::format("generation {} committed", *generation_) : "no generation committed";
  if (backup_json_.is_object()) {
    text += fmt::format(": {} device(s), read {}, {} stored, in {}", backup_json_.value("devices", json::array()).size(),
                        format_bytes(backup_json_.value("read_bytes", uint64_t{0})),
                        format_bytes(backup_json_.value("stored_bytes", uint64_t{0})),
                        format_duration(backup_json_.value("duration_s", 0.0)));
    for (const char* what : {"read", "upload"}) {
      const json& limit = backup_json_.value(std::string(what) + "_limit", json(nullptr));
      if (limit.is_object()) {
        text += fmt::format(", {}s throttled {}", what, format_duration(limit.value("throttled_s", 0.0)));
      }
    }
  }
  if (prune_json_.is_object()) {
    text += fmt::format("; retention removed {} generation(s), kept {}",
                        prune_json_.value("removed", json::array()).size(), prune_json_.value("kept", uint64_t{0}));
    if (prune_json_.contains("gc")) {
      const auto& gc = prune_json_["gc"];
      const uint64_t before = gc.value("bytes_before", uint64_t{0}), after = gc.value("bytes_after", uint64_t{0});
      text += fmt::format(", gc reclaimed {}", format_bytes(before > after ? before - after : 0));
    }
  }
  return text;
}

void JobRun::print_result(const Status& st) {
  json j = {{"job", job_.name},
            {"status", st ? "success" : "failure"},
            {"generation", generation_ ? json(*generation_) : json(nullptr)},
            {"error", st ? json(nullptr) : json(st.error().message())},
            {"exit_status", st ? 0 : exit_status_for(st.error().code())},
            {"duration_s", std::chrono::duration<double>(Clock::now() - t0_).count()},
            {"backup", backup_json_},
            {"prune", prune_json_},
            {"hooks", hooks_json_}};
  ctx_.out.result_json(j);
  if (st) ctx_.out.result(fmt::format("job {}: success: {}", job_.name, success_text()));
}

Status JobRun::execute() {
  // Reporting first: every later outcome, a skip included, is logged.
  auto log = JobLog::open(job_.name, job_.report.log_file, job_.report.syslog, ctx_.out);
  if (!log) {
    log_.emplace(JobLog::syslog_only(job_.name, job_.report.syslog, ctx_.out));
    Error e = std::move(log).error().wrap("job " + job_.name);
    log_->outcome(JobLog::Outcome::kFailure, e.message());
    write_metrics(e);
    notify(e, "failure: " + e.message());
    return fail(std::move(e));
  }
  log_.emplace(std::move(*log));

  std::string holder;
  auto job_lock = take_job_lock(config_.state_dir, job_.name, &holder);
  if (!job_lock) {
    first_error_ = std::move(job_lock).error().wrap("taking the job lock");
  } else if (!*job_lock) {
    std::string why = fmt::format("its previous run ({}) is still going", holder);
    log_->outcome(JobLog::Outcome::kSkipped, why);
    return fail(ErrorCode::kLocked, fmt::format("job {} skipped: {}", job_.name, why));
  } else {
    log_->line(fmt::format("started: devices {}, repository {}", fmt::join(job_.devices, ", "),
                           config_.repository.path));
    if (Status st = work(); !st) first_error_ = std::move(st).error();
    if (!first_error_ && ctx_.cancel.cancelled()) first_error_ = cancelled(ctx_.cancel);
    post_hook();
  }

  Status result;
  if (first_error_) result = fail(*first_error_);
  print_result(result);
  // The outcome line, the metrics, the notification: each says what the exit status says.
  std::string text = result ? success_text() : first_error_->message();
  if (!result && generation_ && text.find(fmt::format("generation {}", *generation_)) == std::string::npos) {
    text += fmt::format(" (generation {} was committed)", *generation_);
  }
  const JobLog::Outcome outcome = result ? JobLog::Outcome::kSuccess : JobLog::Outcome::kFailure;
  log_->outcome(outcome, text);
  write_metrics(first_error_);
  notify(first_error_, fmt::format("{}: {}", outcome_name(outcome), text));
  if (!log_->write_problem().empty()) {
    ctx_.out.log(LogLevel::kWarning, fmt::format("job {}: writing the log file {}: {}", job_.name,
                                                 job_.report.log_file, log_->write_problem()));
  }
  // Release the repository (and its lock) before the job lock.
  repository_.reset();
  if (!result) return fail(std::move(result).error().wrap("job " + job_.name));
  return {};
}

}  // namespace

Status cmd_run(Context& ctx, const RunOptions& opts) {
  BLKVAULT_TRY_ASSIGN(config::Config config, config::load_file(opts.config_file));
  const config::JobConfig* job = config.find_job(opts.job);
  if (job == nullptr) {
    std::vector<std::string> names;
    for (const auto& j : config.jobs) names.push_back(j.name);
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("job {}: {} has no such job ({})", opts.job, opts.config_file,
                            names.empty() ? "it has none" : fmt::format("it has: {}", fmt::join(names, ", "))));
  }
  JobRun run(ctx, config, *job);
  return run.execute();
}

void RunCommands::add_to(CLI::App& cli) {
  run_ = cli.add_subcommand("run", "Run one job of the configuration file: lock, pre hook, backup, post hooks, "
                                   "retention, and its outcome in the log");
  run_->add_option("JOB", opts_.job, "The job ([job.NAME] in the configuration file)")->required();
  run_->add_option("--config", opts_.config_file, "Configuration file");
  run_->footer(
      "A run of a job whose previous run is still going is skipped (exit status 4). Hooks, the log line and the\n"
      "on-success/on-failure commands: docs/CONFIG.md; metrics (--metrics-dir, [metrics] textfile-dir):\n"
      "docs/METRICS.md; what to watch: docs/ADMIN.md.");
}

}  // namespace blkvault::app
