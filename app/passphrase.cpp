#include "app/passphrase.h"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>

#include "app/subprocess.h"
#include "common/file_io.h"
#include "common/unique_fd.h"

namespace blkvault::app {
namespace {

std::string first_line(std::string text) {
  const auto nl = text.find('\n');
  if (nl != std::string::npos) text.resize(nl);
  if (!text.empty() && text.back() == '\r') text.pop_back();
  return text;
}

// Prompts on /dev/tty with echo off. nullopt when there is no terminal.
Result<std::optional<std::string>> prompt(const std::string& question) {
  UniqueFd tty(::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!tty.valid()) return std::optional<std::string>();
  struct termios old {};
  if (::tcgetattr(tty.get(), &old) != 0) return std::optional<std::string>();
  struct termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ECHONL;
  (void)!::write(tty.get(), question.data(), question.size());
  ::tcsetattr(tty.get(), TCSAFLUSH, &quiet);
  std::string line;
  char c;
  while (::read(tty.get(), &c, 1) == 1 && c != '\n') line += c;
  ::tcsetattr(tty.get(), TCSAFLUSH, &old);
  return std::optional<std::string>(line);
}

}  // namespace

Result<std::string> read_passphrase(const Context& ctx, const std::string& purpose, bool confirm) {
  if (!ctx.password_file.empty()) {
    auto text = read_file(ctx.password_file);
    if (!text) return fail(ErrorCode::kKey, "--password-file " + ctx.password_file + ": " + text.error().message());
    return first_line(*text);
  }
  if (!ctx.password_command.empty()) {
    auto r = run_process({"/bin/sh", "-c", ctx.password_command}, /*capture_stdout=*/true);
    if (!r) return fail(ErrorCode::kKey, "--password-command: " + r.error().message());
    if (r->exit_status != 0) {
      return fail(ErrorCode::kKey, "--password-command exited with status " + std::to_string(r->exit_status));
    }
    return first_line(r->stdout_text);
  }
  if (const char* env = std::getenv("BLKVAULT_PASSWORD"); env != nullptr) return std::string(env);
  BLKVAULT_TRY_ASSIGN(auto first, prompt("Passphrase for " + purpose + ": "));
  if (!first) {
    return fail(ErrorCode::kKey, purpose + " is encrypted: give its passphrase with BLKVAULT_PASSWORD, --password-file or "
                                           "--password-command (there is no terminal to ask on)");
  }
  if (confirm) {
    BLKVAULT_TRY_ASSIGN(auto second, prompt("Repeat it: "));
    if (!second || *second != *first) return fail(ErrorCode::kInvalidArgument, "the passphrases do not match");
  }
  return *first;
}

Result<std::string> read_new_passphrase(const Context& ctx, const std::string& new_password_file) {
  if (!new_password_file.empty()) {
    auto text = read_file(new_password_file);
    if (!text) return fail(ErrorCode::kInvalidArgument, "--new-password-file " + new_password_file + ": " + text.error().message());
    return first_line(*text);
  }
  if (const char* env = std::getenv("BLKVAULT_NEW_PASSWORD"); env != nullptr) return std::string(env);
  (void)ctx;
  BLKVAULT_TRY_ASSIGN(auto first, prompt("New passphrase: "));
  if (!first) {
    return fail(ErrorCode::kInvalidArgument,
                "give the new passphrase with --new-password-file or BLKVAULT_NEW_PASSWORD (there is no terminal to ask on)");
  }
  BLKVAULT_TRY_ASSIGN(auto second, prompt("Repeat it: "));
  if (!second || *second != *first) return fail(ErrorCode::kInvalidArgument, "the passphrases do not match");
  return *first;
}

}  // namespace blkvault::app
