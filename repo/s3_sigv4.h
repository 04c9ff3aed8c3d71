// repo/s3_sigv4.h — AWS Signature Version 4 for S3 requests (header signing).
//
// The algorithm (AWS "Signature Version 4 signing process"):
//   canonical request = METHOD \n URI \n QUERY \n HEADERS \n SIGNED-HEADERS \n PAYLOAD-SHA256
//   string to sign    = "AWS4-HMAC-SHA256" \n DATE-TIME \n SCOPE \n hex(sha256(canonical request))
//   signing key       = HMAC chain over date, region, service, "aws4_request"
// URI: each '/'-separated segment percent-encoded once (S3 does not normalise
// paths, so no double encoding and no dot-segment removal); query: keys and
// values percent-encoded (RFC 3986 unreserved kept), sorted by key then value;
// headers: names lower-cased, values trimmed with inner runs of spaces collapsed,
// sorted by name, duplicates joined with ','.
// Tested against AWS's published test-suite vectors (tests/repo/s3_sigv4_test.cpp).
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace blkvault::repo::s3 {

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // optional (temporary credentials): sent as x-amz-security-token
};

struct SignInput {
  std::string method;  // "GET", "PUT", ...
  std::string path;    // raw (not encoded) absolute path: "/bucket/packs/ab/ab12"
  std::vector<std::pair<std::string, std::string>> query;    // raw keys and values
  std::vector<std::pair<std::string, std::string>> headers;  // every header to sign; must include host
  std::string payload_sha256;  // hex, or "UNSIGNED-PAYLOAD"
};

struct Signed {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;      // 64 hex digits
  std::string authorization;  // the Authorization header's value
};

// `amz_date`: "YYYYMMDDTHHMMSSZ" (the request's x-amz-date header, which the
// caller must also list in input.headers).
Signed sign_v4(const SignInput& input, const Credentials& credentials, std::string_view region,
               std::string_view service, std::string_view amz_date);

// Percent-encodes everything but A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash).
std::string uri_encode(std::string_view s, bool keep_slash);
// The canonical query string of `query` (encoded, sorted, '&'-joined).
std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query);

std::string sha256_hex(std::span<const uint8_t> data);
std::string sha256_hex(std::string_view data);
// Base64 of the MD5 digest (the Content-MD5 header).
std::string md5_base64(std::span<const uint8_t> data);
// Hex of the MD5 digest (a single-part object's ETag).
std::string md5_hex(std::span<const uint8_t> data);
// "YYYYMMDDTHHMMSSZ" for a Unix time.
std::string amz_date(int64_t unix_seconds);

}  // namespace blkvault::repo::s3
