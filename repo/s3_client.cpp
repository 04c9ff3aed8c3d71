#include "repo/s3_client.h"

#include <curl/curl.h>
#include <expat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "common/s3_credentials.h"

namespace blkvault::repo::s3 {
namespace {

constexpr const char* kEmptySha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::once_flag g_curl_init;

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// --- a tiny XML tree over expat (S3 answers are small documents) ---
struct XmlNode {
  std::string name;
  std::string text;
  std::vector<XmlNode> children;
  const XmlNode* child(std::string_view n) const {
    for (const auto& c : children) {
      if (c.name == n) return &c;
    }
    return nullptr;
  }
  std::string child_text(std::string_view n) const {
    const XmlNode* c = child(n);
    return c != nullptr ? c->text : std::string();
  }
};

struct XmlBuilder {
  XmlNode root;
  std::vector<XmlNode*> stack;
};

void XMLCALL on_start(void* data, const XML_Char* name, const XML_Char**) {
  auto* b = static_cast<XmlBuilder*>(data);
  if (b->stack.empty()) {
    b->root.name = name;
    b->stack.push_back(&b->root);
    return;
  }
  XmlNode* parent = b->stack.back();
  parent->children.push_back(XmlNode{name, {}, {}});
  b->stack.push_back(&parent->children.back());
}

void XMLCALL on_end(void* data, const XML_Char*) {
  auto* b = static_cast<XmlBuilder*>(data);
  if (!b->stack.empty()) b->stack.pop_back();
}

void XMLCALL on_text(void* data, const XML_Char* s, int len) {
  auto* b = static_cast<XmlBuilder*>(data);
  if (!b->stack.empty()) b->stack.back()->text.append(s, static_cast<size_t>(len));
}

// Children are appended while pointers to earlier siblings sit on the stack
// only for ancestors, never for siblings, so vector growth is safe: a node's
// own children vector is only modified while it is the stack's top.
Result<XmlNode> parse_xml(const std::string& text, const std::string& what) {
  XmlBuilder b;
  XML_Parser p = XML_ParserCreate(nullptr);
  if (p == nullptr) return fail(ErrorCode::kInternal, "cannot create an XML parser");
  XML_SetUserData(p, &b);
  XML_SetElementHandler(p, on_start, on_end);
  XML_SetCharacterDataHandler(p, on_text);
  const bool ok = XML_Parse(p, text.data(), static_cast<int>(text.size()), 1) == XML_STATUS_OK;
  std::string err = ok ? "" : XML_ErrorString(XML_GetErrorCode(p));
  XML_ParserFree(p);
  if (!ok) return fail(ErrorCode::kIo, fmt::format("{}: the store's answer is not XML ({})", what, err));
  return std::move(b.root);
}

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

struct ReadState {
  std::span<const uint8_t> body;
  size_t pos = 0;
  RateLimiter* limiter = nullptr;  // ClientOptions::upload_limiter
};

// Under an upload limit, curl is handed at most this much at a time, each
// piece waiting its turn: small enough that a slow shared limit never looks
// like a stalled transfer (stall_timeout_s).
constexpr size_t kLimitedSliceBytes = 16 << 10;

size_t read_cb(char* buf, size_t size, size_t n, void* user) {
  auto* st = static_cast<ReadState*>(user);
  size_t want = std::min(size * n, st->body.size() - st->pos);
  if (st->limiter != nullptr && want > 0) {
    want = std::min(want, kLimitedSliceBytes);
    (void)st->limiter->acquire(want);  // no cancel token: cannot fail
  }
  if (want > 0) std::memcpy(buf, st->body.data() + st->pos, want);
  st->pos += want;
  return want;
}

// Where an answer's body goes: Request::into for a 2xx answer when the
// request gives one (the status is known once the headers are in, before any
// body byte), else Response::body.
struct WriteState {
  CURL* curl;
  std::string* body;
  std::vector<uint8_t>* into;
  size_t into_bytes = 0;
};

size_t write_cb(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<WriteState*>(user);
  const size_t bytes = size * n;
  if (st->into != nullptr) {
    long status = 0;
    curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
      if (st->into->size() < st->into_bytes + bytes) st->into->resize(st->into_bytes + bytes);
      std::memcpy(st->into->data() + st->into_bytes, data, bytes);
      st->into_bytes += bytes;
      return bytes;
    }
  }
  st->body->append(data, bytes);
  return bytes;
}

size_t header_cb(char* data, size_t size, size_t n, void* user) {
  auto* headers = static_cast<std::vector<std::pair<std::string, std::string>>*>(user);
  std::string_view line(data, size * n);
  if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") {
    headers->clear();  // a new response (after a 100 Continue or a redirect)
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string value(line.substr(colon + 1));
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.pop_back();
    headers->emplace_back(lower(std::string(line.substr(0, colon))), std::move(value));
  }
  return size * n;
}

bool retryable_status(long status) { return status >= 500 || status == 429 || status == 408; }

}  // namespace

bool is_s3_url(std::string_view repo) { return repo.substr(0, 3) == "s3:"; }

Result<Endpoint> parse_url(std::string_view repo) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("repository {}: {} (expected s3:https://HOST[:PORT]/BUCKET[/PREFIX])", repo, why));
  };
  if (!is_s3_url(repo)) return bad("not an s3: repository");
  std::string_view rest = repo.substr(3);
  Endpoint e;
  if (rest.substr(0, 8) == "https://") {
    e.scheme = "https";
    rest.remove_prefix(8);
  } else if (rest.substr(0, 7) == "http://") {
    e.scheme = "http";
    rest.remove_prefix(7);
  } else {
    return bad("the address must start with https:// or http://");
  }
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return bad("no bucket given");
  std::string_view hostport = rest.substr(0, slash);
  rest.remove_prefix(slash + 1);
  if (hostport.find('@') != std::string_view::npos) {
    return bad("credentials do not belong in the address (use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
  }
  const size_t colon = hostport.rfind(':');
  if (colon != std::string_view::npos && hostport.find(']') == std::string_view::npos) {
    const std::string port(hostport.substr(colon + 1));
    char* end = nullptr;
    const long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || p < 1 || p > 65535) return bad("bad port '" + port + "'");
    e.port = static_cast<int>(p);
    hostport = hostport.substr(0, colon);
  }
  if (hostport.empty()) return bad("no host given");
  e.host = std::string(hostport);
  const size_t bslash = rest.find('/');
  e.bucket = std::string(rest.substr(0, bslash));
  if (e.bucket.size() < 3 || e.bucket.size() > 63) return bad("a bucket name has 3 to 63 characters");
  for (char c : e.bucket) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) {
      return bad("bucket '" + e.bucket + "' has characters outside [a-z0-9.-]");
    }
  }
  if (bslash != std::string_view::npos) {
    std::string prefix(rest.substr(bslash + 1));
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    if (prefix.find("//") != std::string::npos) return bad("empty segment in the prefix");
    for (char c : prefix) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '/')) {
        return bad("the prefix has characters outside [A-Za-z0-9._/-]");
      }
    }
    if (!prefix.empty()) e.prefix = prefix + "/";
  }
  const std::string_view aws = ".amazonaws.com";
  e.path_style = !(e.host.size() > aws.size() && e.host.compare(e.host.size() - aws.size(), aws.size(), aws) == 0);
  return e;
}

Status apply_environment(Endpoint& endpoint, ClientOptions& options) {
  options.credentials.access_key = env("AWS_ACCESS_KEY_ID");
  options.credentials.secret_key = env("AWS_SECRET_ACCESS_KEY");
  options.credentials.session_token = env("AWS_SESSION_TOKEN");
  const std::string file = env("BLKVAULT_S3_CREDENTIALS_FILE");
  if ((options.credentials.access_key.empty() || options.credentials.secret_key.empty()) && !file.empty()) {
    // The environment's keys come first; otherwise the credentials file.
    BLKVAULT_TRY_ASSIGN(auto c, read_s3_credentials_file(file));
    options.credentials.access_key = c.access_key;
    options.credentials.secret_key = c.secret_key;
    options.credentials.session_token = c.session_token;
  }
  if (options.credentials.access_key.empty() || options.credentials.secret_key.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a credentials file "
                "(BLKVAULT_S3_CREDENTIALS_FILE, or credentials-file in the config) (see docs/OBJECT-STORAGE.md)");
  }
  if (std::string r = env("AWS_REGION"); !r.empty()) endpoint.region = r;
  if (std::string r = env("AWS_DEFAULT_REGION"); !r.empty()) endpoint.region = r;
  if (std::string a = env("BLKVAULT_S3_ADDRESSING"); !a.empty()) {
    if (a == "path") {
      endpoint.path_style = true;
    } else if (a == "virtual") {
      endpoint.path_style = false;
    } else {
      return fail(ErrorCode::kInvalidArgument, "BLKVAULT_S3_ADDRESSING must be path or virtual, not '" + a + "'");
    }
  }
  options.ca_file = env("BLKVAULT_S3_CA_FILE");
  if (env("BLKVAULT_S3_INSECURE_TLS") == "1") options.verify_tls = false;
  return {};
}

std::string Client::Response::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

Client::Client(Endpoint endpoint, ClientOptions options)
    : endpoint_(std::move(endpoint)), options_(std::move(options)) {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Client::~Client() {
  for (void* h : handles_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* Client::take_handle() {
  {
    std::lock_guard g(mu_);
    if (!handles_.empty()) {
      void* h = handles_.back();
      handles_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void Client::give_handle(void* handle) {
  std::lock_guard g(mu_);
  handles_.push_back(handle);
}

std::string Client::url_for(std::string_view key) const {
  std::string s = fmt::format("s3:{}://{}{}/{}", endpoint_.scheme, endpoint_.host,
                              endpoint_.port != 0 ? ":" + std::to_string(endpoint_.port) : std::string(),
                              endpoint_.bucket);
  if (!key.empty()) s += "/" + std::string(key);
  return s;
}

Result<Client::Response> Client::send_once(void* handle, const Request& req, const std::string& payload_sha,
                                           const std::string& content_md5) {
  CURL* curl = static_cast<CURL*>(handle);
  curl_easy_reset(curl);
  std::string host = endpoint_.path_style ? endpoint_.host : endpoint_.bucket + "." + endpoint_.host;
  if (endpoint_.port != 0) host += ":" + std::to_string(endpoint_.port);
  std::string path = endpoint_.path_style ? "/" + endpoint_.bucket : "";
  path += "/" + req.key;
  if (!endpoint_.path_style && req.key.empty()) path = "/";
  SignInput in;
  in.method = req.method;
  in.path = path;
  in.query = req.query;
  const std::string date = amz_date(static_cast<int64_t>(std::time(nullptr)));
  in.headers = {{"host", host}, {"x-amz-date", date}, {"x-amz-content-sha256", payload_sha}};
  if (!content_md5.empty()) in.headers.emplace_back("content-md5", content_md5);
  if (!options_.credentials.session_token.empty()) {
    in.headers.emplace_back("x-amz-security-token", options_.credentials.session_token);
  }
  for (const auto& h : req.headers) in.headers.push_back(h);
  in.payload_sha256 = payload_sha;
  const Signed sig = sign_v4(in, options_.credentials, endpoint_.region, "s3", date);

  curl_slist* list = nullptr;
  for (const auto& [k, v] : in.headers) list = curl_slist_append(list, (k + ": " + v).c_str());
  list = curl_slist_append(list, ("Authorization: " + sig.authorization).c_str());
  list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
  if (req.method == "POST") list = curl_slist_append(list, "Content-Type: application/xml");

  std::string url = endpoint_.scheme + "://" + host + uri_encode(path, true);
  const std::string query = canonical_query(req.query);
  if (!query.empty()) url += "?" + query;

  Response resp;
  ReadState rs{req.body, 0, options_.upload_limiter.get()};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (!options_.reuse_connections) curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_s);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, options_.stall_timeout_s);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, options_.verify_tls ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, options_.verify_tls ? 2L : 0L);
  if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
  WriteState ws{curl, &resp.body, req.into};
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ws);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &resp.headers);
  if (req.method == "PUT") {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(curl, CURLOPT_READDATA, &rs);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  } else if (req.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    static const char kNothing[1] = {0};
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS,
                     req.body.empty() ? kNothing : reinterpret_cast<const char*>(req.body.data()));
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  } else if (req.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (req.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  const CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    return fail(ErrorCode::kIo, fmt::format("{} {}: {}", req.method, url_for(req.key),
                                            errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
  if (req.into != nullptr) req.into->resize(ws.into_bytes);
  resp.into_bytes = ws.into_bytes;
  return resp;
}

namespace {

// BLKVAULT_S3_TRACE=1: one line per request on stderr (method, key, bytes
// sent and received, status, milliseconds, attempt), to see where a slow run
// against a store spends its round trips (docs/OBJECT-STORAGE.md).
bool tracing() {
  static const bool on = [] {
    const char* v = std::getenv("BLKVAULT_S3_TRACE");
    return v != nullptr && *v != '\0' && std::string_view(v) != "0";
  }();
  return on;
}

void trace(const Client::Request& req, const Result<Client::Response>& resp, double ms, int attempt) {
  std::string query;
  for (const auto& [k, v] : req.query) query += (query.empty() ? "?" : "&") + k + (v.empty() ? "" : "=" + v);
  const std::string outcome = resp ? std::to_string(resp->status) + ", " +
                                         std::to_string(resp->body.size() + resp->into_bytes) + " B back"
                                   : "no answer: " + resp.error().message();
  std::fputs(fmt::format("blkvault: s3: {} /{}{} ({} B) -> {} in {:.1f} ms{}\n", req.method, req.key, query,
                         req.body.size(), outcome, ms, attempt > 1 ? fmt::format(" (attempt {})", attempt) : "")
                 .c_str(),
             stderr);
}

}  // namespace

Result<Client::Response> Client::send(const Request& req) {
  const std::string payload_sha = req.body.empty() ? std::string(kEmptySha) : sha256_hex(req.body);
  // The signed x-amz-content-sha256 is the upload's checksum: the store
  // computes the body's SHA-256 and refuses a body that does not match (400
  // XAmzContentSHA256Mismatch), tests/repo/s3_faults_test.cpp. An MD5 on top
  // cost more CPU than the SHA-256 itself (1.3 s per GB here); only the small
  // XML bodies of POSTs carry one, as some requests of that kind need it.
  const std::string md5 = req.method == "POST" ? md5_base64(req.body) : std::string();
  thread_local std::mt19937 rng{std::random_device{}()};
  double backoff = options_.first_backoff_s;
  for (int attempt = 1;; ++attempt) {
    void* h = take_handle();
    if (h == nullptr) return fail(ErrorCode::kInternal, "curl_easy_init failed");
    const auto sent = std::chrono::steady_clock::now();
    auto resp = send_once(h, req, payload_sha, md5);
    give_handle(h);
    if (tracing()) {
      trace(req, resp, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sent).count(),
            attempt);
    }
    // A body damaged on the way is refused and worth sending again.
    const bool damaged = resp && resp->status == 400 &&
                         (resp->body.find("<Code>XAmzContentSHA256Mismatch</Code>") != std::string::npos ||
                          resp->body.find("<Code>BadDigest</Code>") != std::string::npos);
    const bool retry = !resp || retryable_status(resp->status) || damaged;
    if (!retry || attempt >= options_.max_attempts) {
      if (!resp && attempt > 1) {
        return fail(std::move(resp.error()).wrap(fmt::format("after {} attempts", attempt)).with_code(ErrorCode::kIo));
      }
      if (resp && attempt > 1) resp->headers.emplace_back("x-blkvault-attempts", std::to_string(attempt));
      return resp;
    }
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    std::this_thread::sleep_for(std::chrono::duration<double>(backoff * jitter(rng)));
    backoff = std::min(backoff * 2, 10.0);
  }
}

Error Client::http_error(const Request& req, const Response& resp) const {
  std::string code, message;
  if (!resp.body.empty()) {
    if (auto x = parse_xml(resp.body, "")) {
      code = x->child_text("Code");
      message = x->child_text("Message");
    }
  }
  std::string what = fmt::format("{} {}: HTTP {}", req.method, url_for(req.key), resp.status);
  if (!code.empty()) what += " " + code;
  if (!message.empty()) what += ": " + message;
  if (std::string a = resp.header("x-blkvault-attempts"); !a.empty()) what += " (after " + a + " attempts)";
  ErrorCode ec = ErrorCode::kIo;
  if (resp.status == 404) ec = ErrorCode::kNotFound;
  if (resp.status == 403 || resp.status == 401) {
    ec = ErrorCode::kPermission;
    if (code.empty()) what += " Forbidden";
    what += " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions)";
  }
  return Error(ec, what);
}

Status Client::put(std::string_view key, std::span<const uint8_t> data, bool if_none_match) {
  Request req{"PUT", std::string(key), {}, {}, data};
  if (if_none_match) req.headers.emplace_back("if-none-match", "*");
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status == 200) return {};
  if (resp.status == 412 && if_none_match) {
    // After a retry, the object may be our own first attempt's: its ETag is
    // the MD5 of what we sent.
    if (!resp.header("x-blkvault-attempts").empty()) {
      Request head{"HEAD", std::string(key), {}, {}, {}};
      auto h = send(head);
      if (h && h->status == 200) {
        std::string etag = h->header("etag");
        etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
        if (etag == md5_hex(data)) return {};
      }
    }
    return fail(ErrorCode::kInvalidArgument, url_for(key) + " already exists", EEXIST);
  }
  return fail(http_error(req, resp));
}

Result<std::vector<uint8_t>> Client::get(std::string_view key) {
  Request req{"GET", std::string(key), {}, {}, {}};
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status != 200) return fail(http_error(req, resp));
  return std::vector<uint8_t>(resp.body.begin(), resp.body.end());
}

Result<std::vector<uint8_t>> Client::get_range(std::string_view key, uint64_t offset, uint64_t length) {
  std::vector<uint8_t> out;
  BLKVAULT_TRY(get_range_into(key, offset, length, out));
  return out;
}

Status Client::get_range_into(std::string_view key, uint64_t offset, uint64_t length, std::vector<uint8_t>& out) {
  if (length == 0) {
    BLKVAULT_TRY_ASSIGN(auto size, head(key));
    if (!size) return fail(ErrorCode::kNotFound, url_for(key) + ": not found");
    if (*size < offset) return fail(ErrorCode::kCorrupt, fmt::format("{}: shorter than {} bytes", url_for(key), offset));
    out.clear();
    return {};
  }
  Request req{"GET", std::string(key), {}, {{"range", fmt::format("bytes={}-{}", offset, offset + length - 1)}}, {}};
  out.resize(length);  // the room the answer is received into, allocated once
  req.into = &out;
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status == 416) {
    return fail(ErrorCode::kCorrupt, fmt::format("{}: has no bytes at offset {}", url_for(key), offset));
  }
  if (resp.status != 206 && resp.status != 200) return fail(http_error(req, resp));
  if (resp.status == 200) {
    // A store that ignored the range sent the whole object.
    const size_t there = out.size() > offset ? std::min<uint64_t>(length, out.size() - offset) : 0;
    if (there > 0) std::memmove(out.data(), out.data() + offset, there);
    out.resize(there);
  }
  if (out.size() != length) {
    return fail(ErrorCode::kCorrupt, fmt::format("{}: {} bytes at offset {} asked, {} there", url_for(key), length,
                                                 offset, out.size()));
  }
  return {};
}

Result<std::optional<uint64_t>> Client::head(std::string_view key) {
  Request req{"HEAD", std::string(key), {}, {}, {}};
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status == 404) return std::optional<uint64_t>();
  if (resp.status != 200) return fail(http_error(req, resp));
  const std::string len = resp.header("content-length");
  char* end = nullptr;
  const unsigned long long n = std::strtoull(len.c_str(), &end, 10);
  if (len.empty() || *end != '\0') return fail(ErrorCode::kIo, "HEAD " + url_for(key) + ": no Content-Length");
  return std::optional<uint64_t>(n);
}

Status Client::remove(std::string_view key) {
  Request req{"DELETE", std::string(key), {}, {}, {}};
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status == 204 || resp.status == 200 || resp.status == 404) return {};
  return fail(http_error(req, resp));
}

Result<std::vector<ObjectInfo>> Client::list(std::string_view prefix, int page_size) {
  std::vector<ObjectInfo> out;
  std::string token;
  for (;;) {
    Request req{"GET", "", {{"list-type", "2"}, {"prefix", std::string(prefix)}, {"max-keys", std::to_string(page_size)}},
                {}, {}};
    if (!token.empty()) req.query.emplace_back("continuation-token", token);
    BLKVAULT_TRY_ASSIGN(auto resp, send(req));
    if (resp.status != 200) return fail(http_error(req, resp));
    BLKVAULT_TRY_ASSIGN(auto doc, parse_xml(resp.body, "listing " + url_for(std::string(prefix))));
    for (const auto& c : doc.children) {
      if (c.name != "Contents") continue;
      ObjectInfo info;
      info.key = c.child_text("Key");
      info.size = std::strtoull(c.child_text("Size").c_str(), nullptr, 10);
      out.push_back(std::move(info));
    }
    if (doc.child_text("IsTruncated") != "true") break;
    token = doc.child_text("NextContinuationToken");
    if (token.empty()) return fail(ErrorCode::kIo, "listing " + url_for(prefix) + ": truncated without a continuation token");
  }
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

Result<std::string> Client::create_multipart(std::string_view key) {
  Request req{"POST", std::string(key), {{"uploads", ""}}, {}, {}};
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status != 200) return fail(http_error(req, resp));
  BLKVAULT_TRY_ASSIGN(auto doc, parse_xml(resp.body, "starting an upload of " + url_for(key)));
  std::string id = doc.child_text("UploadId");
  if (id.empty()) return fail(ErrorCode::kIo, "starting an upload of " + url_for(key) + ": no UploadId in the answer");
  // A retried start may have started uploads whose answers were lost: only
  // this writer uses this key, so every other upload of it is such an orphan.
  if (!resp.header("x-blkvault-attempts").empty()) {
    if (auto uploads = list_multipart(key)) {
      for (const auto& u : *uploads) {
        if (u.key == key && u.upload_id != id) (void)abort_multipart(u.key, u.upload_id);
      }
    }
  }
  return id;
}

Result<std::string> Client::upload_part(std::string_view key, const std::string& upload_id, int part_number,
                                        std::span<const uint8_t> data) {
  Request req{"PUT", std::string(key), {{"partNumber", std::to_string(part_number)}, {"uploadId", upload_id}}, {}, data};
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status != 200) return fail(http_error(req, resp));
  std::string etag = resp.header("etag");
  if (etag.empty()) return fail(ErrorCode::kIo, fmt::format("uploading part {} of {}: no ETag", part_number, url_for(key)));
  return etag;
}

Status Client::complete_multipart(std::string_view key, const std::string& upload_id,
                                  const std::vector<std::string>& etags, bool if_none_match) {
  std::string xml = "<CompleteMultipartUpload>";
  for (size_t i = 0; i < etags.size(); ++i) {
    xml += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", i + 1, xml_escape(etags[i]));
  }
  xml += "</CompleteMultipartUpload>";
  Request req{"POST", std::string(key), {{"uploadId", upload_id}}, {}, std::span(reinterpret_cast<const uint8_t*>(xml.data()), xml.size())};
  if (if_none_match) req.headers.emplace_back("if-none-match", "*");
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status == 412 && if_none_match) {
    return fail(ErrorCode::kInvalidArgument, url_for(key) + " already exists", EEXIST);
  }
  // A retried completion whose first attempt went through: the upload is gone
  // and the object is there.
  if (resp.status == 404 && !resp.header("x-blkvault-attempts").empty()) {
    BLKVAULT_TRY_ASSIGN(auto size, head(key));
    if (size) return {};
  }
  if (resp.status != 200) return fail(http_error(req, resp));
  // S3 may answer 200 with an error document when the completion failed late.
  if (resp.body.find("<Error>") != std::string::npos) {
    Response r = resp;
    r.status = 500;
    return fail(http_error(req, r));
  }
  return {};
}

Status Client::abort_multipart(std::string_view key, const std::string& upload_id) {
  Request req{"DELETE", std::string(key), {{"uploadId", upload_id}}, {}, {}};
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status == 204 || resp.status == 200 || resp.status == 404) return {};
  return fail(http_error(req, resp));
}

Result<std::vector<Upload>> Client::list_multipart(std::string_view prefix) {
  std::vector<Upload> out;
  std::string key_marker, id_marker;
  for (;;) {
    Request req{"GET", "", {{"uploads", ""}, {"prefix", std::string(prefix)}}, {}, {}};
    if (!key_marker.empty()) {
      req.query.emplace_back("key-marker", key_marker);
      req.query.emplace_back("upload-id-marker", id_marker);
    }
    BLKVAULT_TRY_ASSIGN(auto resp, send(req));
    if (resp.status != 200) return fail(http_error(req, resp));
    BLKVAULT_TRY_ASSIGN(auto doc, parse_xml(resp.body, "listing uploads under " + url_for(prefix)));
    for (const auto& c : doc.children) {
      if (c.name == "Upload") out.push_back({c.child_text("Key"), c.child_text("UploadId")});
    }
    if (doc.child_text("IsTruncated") != "true") break;
    key_marker = doc.child_text("NextKeyMarker");
    id_marker = doc.child_text("NextUploadIdMarker");
    if (key_marker.empty()) break;
  }
  return out;
}

Status Client::create_bucket() {
  Request req{"PUT", "", {}, {}, {}};
  std::string body;
  if (endpoint_.region != "us-east-1") {
    body = "<CreateBucketConfiguration><LocationConstraint>" + xml_escape(endpoint_.region) +
           "</LocationConstraint></CreateBucketConfiguration>";
    req.body = std::span(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  }
  BLKVAULT_TRY_ASSIGN(auto resp, send(req));
  if (resp.status == 200) return {};
  if (resp.status == 409 && resp.body.find("BucketAlreadyOwnedByYou") != std::string::npos) return {};
  return fail(http_error(req, resp));
}

}  // namespace blkvault::repo::s3
