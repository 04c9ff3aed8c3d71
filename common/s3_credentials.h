// common/s3_credentials.h — S3 credentials from a file in the AWS shared
// credentials format (docs/OBJECT-STORAGE.md, "Credentials and settings"):
//
//   [default]
//   aws_access_key_id = AKIA…
//   aws_secret_access_key = …
//   aws_session_token = …        (optional)
//
// Used by repo/ (when the environment has no keys) and by config/ (`config
// check` validates the file a config names). Only the named profile's section
// is read; blank lines and lines starting with '#' or ';' are skipped; keys
// are case-insensitive, values trimmed. Other sections and keys are ignored
// (the file may be shared with the AWS CLI).
// Thread-safety: stateless.
#pragma once

#include <string>

#include "common/error.h"

namespace blkvault {

struct S3Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // "" when none
};

// kNotFound / kIo when the file cannot be read; kInvalidArgument, naming the
// file and the section, when the profile or one of its two keys is missing.
Result<S3Credentials> read_s3_credentials_file(const std::string& path, const std::string& profile = "default");

}  // namespace blkvault
