// app/passphrase.h — where an encrypted repository's passphrase comes from, in
// this order: --password-file FILE (its first line), --password-command CMD
// (run by /bin/sh -c; the first line of its output), $BLKVAULT_PASSWORD, and
// last a prompt on the terminal (never echoed; asked twice when creating).
// Without any of them, a kKey error says which to give.
// Thread-safety: call from the main thread (the prompt owns the terminal).
#pragma once

#include <string>

#include "app/commands.h"

namespace blkvault::app {

// `purpose`: "repository /srv/repo" (for the prompt and the error).
// `confirm`: ask twice at the terminal (a new passphrase).
Result<std::string> read_passphrase(const Context& ctx, const std::string& purpose, bool confirm);

// A new passphrase for `key add`/`key passwd`/`key import`: --new-password-file,
// $BLKVAULT_NEW_PASSWORD, or the terminal (asked twice).
Result<std::string> read_new_passphrase(const Context& ctx, const std::string& new_password_file);

}  // namespace blkvault::app
