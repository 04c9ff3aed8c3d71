#include "common/s3_credentials.h"

#include <algorithm>
#include <cctype>
#include <string_view>

#include <fmt/format.h>

#include "common/file_io.h"

namespace blkvault {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace

Result<S3Credentials> read_s3_credentials_file(const std::string& path, const std::string& profile) {
  auto text = read_file(path);
  if (!text) return fail(std::move(text.error()).wrap("reading S3 credentials file " + path));
  S3Credentials c;
  bool in_section = false, seen_section = false;
  std::string_view rest(*text);
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    std::string_view line = trim(rest.substr(0, nl));
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      in_section = trim(line.substr(1, line.size() - 2)) == profile;
      seen_section = seen_section || in_section;
      continue;
    }
    if (!in_section) continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string key = lower(trim(line.substr(0, eq)));
    const std::string value(trim(line.substr(eq + 1)));
    if (key == "aws_access_key_id") c.access_key = value;
    if (key == "aws_secret_access_key") c.secret_key = value;
    if (key == "aws_session_token") c.session_token = value;
  }
  if (!seen_section) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("S3 credentials file {} has no [{}] section", path, profile));
  }
  for (auto [name, value] : {std::pair{"aws_access_key_id", &c.access_key}, std::pair{"aws_secret_access_key", &c.secret_key}}) {
    if (value->empty()) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("S3 credentials file {} has no {} in its [{}] section", path, name, profile));
    }
  }
  return c;
}

}  // namespace blkvault
