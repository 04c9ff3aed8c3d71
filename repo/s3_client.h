// repo/s3_client.h — a small S3 client over libcurl: objects, listings and
// multipart uploads, signed with SigV4 (repo/s3_sigv4.h).
//
// Every request is retried with exponential backoff (and jitter) on transport
// failures (timeouts, resets, refused connections), 5xx answers and 429/503
// "slow down". A PUT carries its SHA-256 (x-amz-content-sha256, signed) and
// Content-MD5, so the store rejects a body damaged in transit. TLS peers are
// verified unless the options say otherwise.
// Errors: 404 kNotFound; 403 kPermission; 412 on a conditional write
// kInvalidArgument "… already exists" (EEXIST); other failures kIo, with the
// store's error code and message ("… HTTP 500 InternalError: …").
// Thread-safety: a Client may be used from many threads at once (it keeps a
// pool of curl handles, one per request in flight).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/rate_limiter.h"
#include "repo/s3_sigv4.h"

namespace blkvault::repo::s3 {

// Where a repository lives: "s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]".
struct Endpoint {
  std::string scheme = "https";
  std::string host;
  int port = 0;            // 0: the scheme's default
  std::string bucket;
  std::string prefix;      // "" or "some/dir/" (always ends with '/')
  bool path_style = true;  // false: virtual-host addressing (BUCKET.HOST)
  std::string region = "us-east-1";
};

bool is_s3_url(std::string_view repo);
// kInvalidArgument naming what is wrong. path_style is true unless the host is
// AWS's (*.amazonaws.com); region is left at its default.
Result<Endpoint> parse_url(std::string_view repo);

struct ClientOptions {
  Credentials credentials;
  bool verify_tls = true;
  std::string ca_file;          // extra CA bundle ("" : the system's)
  int max_attempts = 6;         // per request, the first included
  double first_backoff_s = 0.2; // doubles each retry, capped at 10 s
  long connect_timeout_s = 10;
  long stall_timeout_s = 60;    // abort a transfer that moves nothing for this long
  bool reuse_connections = true; // false: a new connection per request (tests)
  // Limits the object bodies sent (PUT and part uploads, retries included)
  // across every request of this client, and of any other client sharing it.
  // Null: no limit.
  std::shared_ptr<RateLimiter> upload_limiter;
};

// Credentials and addressing from the environment: AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (or, when the two keys are not both
// set, the [default] section of the file BLKVAULT_S3_CREDENTIALS_FILE names:
// common/s3_credentials.h), AWS_DEFAULT_REGION / AWS_REGION,
// BLKVAULT_S3_ADDRESSING=path|virtual, BLKVAULT_S3_CA_FILE,
// BLKVAULT_S3_INSECURE_TLS=1 (tests only). kInvalidArgument when a key is missing.
Status apply_environment(Endpoint& endpoint, ClientOptions& options);

struct ObjectInfo {
  std::string key;  // the full key (bucket prefix included)
  uint64_t size = 0;
};

struct Upload {
  std::string key;
  std::string upload_id;
};

class Client {
 public:
  Client(Endpoint endpoint, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const Endpoint& endpoint() const { return endpoint_; }
  // "s3:http://127.0.0.1:8000/bucket" (+ "/" + key): for messages.
  std::string url_for(std::string_view key) const;

  // `if_none_match`: fail with "already exists" instead of replacing an object.
  // A retried conditional PUT that finds its own earlier attempt's object
  // (same MD5 ETag) counts as a success.
  Status put(std::string_view key, std::span<const uint8_t> data, bool if_none_match);
  Result<std::vector<uint8_t>> get(std::string_view key);
  // Exactly `length` bytes at `offset` (kCorrupt when the object is shorter).
  Result<std::vector<uint8_t>> get_range(std::string_view key, uint64_t offset, uint64_t length);
  // The same into `out` (resized to `length`, its capacity reused): the
  // answer's body is received straight into it, with no copy in between.
  Status get_range_into(std::string_view key, uint64_t offset, uint64_t length, std::vector<uint8_t>& out);
  // The object's size, or nullopt when there is none.
  Result<std::optional<uint64_t>> head(std::string_view key);
  // Deleting a missing key is not an error (S3 answers 204 either way).
  Status remove(std::string_view key);
  // Every object under `prefix`, sorted (ListObjectsV2 pages of up to
  // `page_size` keys, following continuation tokens).
  Result<std::vector<ObjectInfo>> list(std::string_view prefix, int page_size = 1000);

  // Starts a multipart upload. REQUIRES: no one else uploads `key` (after a
  // retry, the other uploads of `key` are taken for orphans of this call and aborted).
  Result<std::string> create_multipart(std::string_view key);
  // Returns the part's ETag. part_number: 1..10000.
  Result<std::string> upload_part(std::string_view key, const std::string& upload_id, int part_number,
                                  std::span<const uint8_t> data);
  Status complete_multipart(std::string_view key, const std::string& upload_id,
                            const std::vector<std::string>& etags, bool if_none_match);
  Status abort_multipart(std::string_view key, const std::string& upload_id);
  Result<std::vector<Upload>> list_multipart(std::string_view prefix);

  // Creates the bucket (tests, and `init` on an empty store); an existing
  // bucket we own is not an error.
  Status create_bucket();

  struct Response {
    long status = 0;
    std::string body;  // except a 2xx answer's received into Request::into
    size_t into_bytes = 0;  // the bytes received into Request::into
    std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
    std::string header(std::string_view name) const;
  };
  struct Request {
    std::string method;
    std::string key;  // "" for the bucket itself
    std::vector<std::pair<std::string, std::string>> query;
    std::vector<std::pair<std::string, std::string>> headers;
    std::span<const uint8_t> body;
    // When set, a 2xx answer's body goes here (resized to what arrived; its
    // capacity reused) instead of Response::body. Not owned; REQUIRES: it
    // outlives send().
    std::vector<uint8_t>* into = nullptr;
  };
  // Sends `req`, retrying as described above. Returns the final response
  // whatever its status; an error only when no response came.
  Result<Response> send(const Request& req);

 private:
  void* take_handle();
  void give_handle(void* handle);
  Result<Response> send_once(void* handle, const Request& req, const std::string& payload_sha,
                             const std::string& content_md5);
  Error http_error(const Request& req, const Response& resp) const;

  Endpoint endpoint_;
  ClientOptions options_;
  std::mutex mu_;
  std::vector<void*> handles_;
};

}  // namespace blkvault::repo::s3
