#include "repo/s3_storage.h"

#include <deque>
#include <future>
#include <memory>
#include <optional>

#include <fmt/format.h>

namespace blkvault::repo {
namespace {

// Parts go out on their own threads, up to S3Storage::uploads_in_flight() at
// once over all writers of the storage, so the writer's caller (chunk workers
// filling a pack) goes on while earlier parts travel. Memory: that many parts,
// plus the one each writer is filling.
class S3Writer final : public Storage::Writer {
 public:
  S3Writer(S3Storage& storage, std::string name)
      : storage_(storage), name_(std::move(name)), buffer_(storage.take_part_buffer()) {}
  ~S3Writer() override {
    while (!inflight_.empty()) (void)drain_one();
    if (!committed_ && !upload_id_.empty()) {
      (void)storage_.client().abort_multipart(storage_.key_for(name_), upload_id_);
    }
    storage_.give_part_buffer(std::move(buffer_));
  }
  Status append(std::span<const uint8_t> data) override {
    if (committed_) return fail(ErrorCode::kInternal, name_ + ": append after commit");
    if (failed_) return fail(*failed_);
    size_ += data.size();
    while (!data.empty()) {
      const size_t room = storage_.part_size() - buffer_.size();
      const size_t n = std::min(room, data.size());
      buffer_.insert(buffer_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
      data = data.subspan(n);
      // A full part goes out only once more data follows, so a file of exactly
      // one part stays a single PUT.
      if (buffer_.size() == storage_.part_size() && !data.empty()) BLKVAULT_TRY(flush_part());
    }
    return {};
  }
  uint64_t size() const override { return size_; }
  Status commit() override {
    if (committed_) return fail(ErrorCode::kInternal, name_ + " committed twice");
    if (failed_) return fail(*failed_);
    const std::string key = storage_.key_for(name_);
    if (upload_id_.empty()) {
      BLKVAULT_TRY(storage_.client().put(key, buffer_, /*if_none_match=*/true));
      committed_ = true;
      return {};
    }
    if (!buffer_.empty()) BLKVAULT_TRY(flush_part());
    while (!inflight_.empty()) BLKVAULT_TRY(drain_one());
    // Not every store honours If-None-Match on completion: look first.
    BLKVAULT_TRY_ASSIGN(auto there, storage_.client().head(key));
    if (there) return fail(ErrorCode::kInvalidArgument, storage_.client().url_for(key) + " already exists", EEXIST);
    BLKVAULT_TRY(storage_.client().complete_multipart(key, upload_id_, etags_, /*if_none_match=*/true));
    committed_ = true;
    return {};
  }

 private:
  Status flush_part() {
    const std::string key = storage_.key_for(name_);
    if (upload_id_.empty()) {
      BLKVAULT_TRY_ASSIGN(upload_id_, storage_.client().create_multipart(key));
    }
    while (inflight_.size() >= storage_.uploads_in_flight()) BLKVAULT_TRY(drain_one());
    auto part = std::make_shared<std::vector<uint8_t>>(std::move(buffer_));
    buffer_ = storage_.take_part_buffer();
    const int number = next_part_++;
    S3Storage* storage = &storage_;
    const std::string id = upload_id_;
    storage->acquire_upload_slot();
    inflight_.push_back(std::async(std::launch::async, [storage, key, id, number, part]() {
      auto etag = storage->client().upload_part(key, id, number, *part);
      storage->release_upload_slot();
      storage->give_part_buffer(std::move(*part));
      return etag;
    }));
    return {};
  }

  // Waits for the oldest part in flight; its ETag joins the list in order.
  Status drain_one() {
    auto r = inflight_.front().get();
    inflight_.pop_front();
    if (!r) {
      if (!failed_) failed_ = r.error();
      return fail(std::move(r.error()));
    }
    etags_.push_back(std::move(*r));
    return {};
  }

  S3Storage& storage_;
  std::string name_;
  std::vector<uint8_t> buffer_;
  std::string upload_id_;
  std::vector<std::string> etags_;
  std::deque<std::future<Result<std::string>>> inflight_;
  std::optional<Error> failed_;  // a part that failed: the file cannot be completed
  int next_part_ = 1;
  uint64_t size_ = 0;
  bool committed_ = false;
};

}  // namespace

bool is_remote_repository(std::string_view repo) { return s3::is_s3_url(repo); }

void S3Storage::acquire_upload_slot() {
  std::unique_lock g(slots_mu_);
  slots_cv_.wait(g, [&] { return slots_used_ < uploads_in_flight_; });
  ++slots_used_;
}

void S3Storage::release_upload_slot() {
  std::lock_guard g(slots_mu_);
  --slots_used_;
  slots_cv_.notify_one();
}

std::vector<uint8_t> S3Storage::take_part_buffer() {
  std::vector<uint8_t> b;
  {
    std::lock_guard g(parts_mu_);
    if (!spare_parts_.empty()) {
      b = std::move(spare_parts_.back());
      spare_parts_.pop_back();
    }
  }
  b.clear();
  b.reserve(part_size_);
  return b;
}

void S3Storage::give_part_buffer(std::vector<uint8_t> buffer) {
  // Enough for the parts in flight and the ones being filled; more would
  // only hold memory.
  std::lock_guard g(parts_mu_);
  if (buffer.capacity() >= part_size_ && spare_parts_.size() < uploads_in_flight_ + 2) {
    spare_parts_.push_back(std::move(buffer));
  }
}

Result<std::unique_ptr<S3Storage>> S3Storage::open(const std::string& url,
                                                   std::shared_ptr<RateLimiter> upload_limiter) {
  BLKVAULT_TRY_ASSIGN(auto endpoint, s3::parse_url(url));
  s3::ClientOptions options;
  options.upload_limiter = std::move(upload_limiter);
  BLKVAULT_TRY(s3::apply_environment(endpoint, options));
  return open(std::move(endpoint), std::move(options));
}

std::unique_ptr<S3Storage> S3Storage::open(s3::Endpoint endpoint, s3::ClientOptions options) {
  return std::unique_ptr<S3Storage>(new S3Storage(std::move(endpoint), std::move(options)));
}

std::string S3Storage::description() const {
  std::string prefix = client_.endpoint().prefix;
  if (!prefix.empty()) prefix.pop_back();
  return client_.url_for(prefix);
}

Status S3Storage::put(std::string_view name, std::span<const uint8_t> data) {
  BLKVAULT_TRY(check_name(name));
  if (data.size() > part_size_) {
    BLKVAULT_TRY_ASSIGN(auto w, create(name));
    BLKVAULT_TRY(w->append(data));
    return w->commit();
  }
  return client_.put(key_for(name), data, /*if_none_match=*/true);
}

Result<std::unique_ptr<Storage::Writer>> S3Storage::create(std::string_view name) {
  BLKVAULT_TRY(check_name(name));
  return std::unique_ptr<Writer>(new S3Writer(*this, std::string(name)));
}

Result<std::vector<uint8_t>> S3Storage::get(std::string_view name) {
  BLKVAULT_TRY(check_name(name));
  return client_.get(key_for(name));
}

Result<std::vector<uint8_t>> S3Storage::get_range(std::string_view name, uint64_t offset, uint64_t length) {
  BLKVAULT_TRY(check_name(name));
  return client_.get_range(key_for(name), offset, length);
}

Status S3Storage::get_range_into(std::string_view name, uint64_t offset, uint64_t length, std::vector<uint8_t>& out) {
  BLKVAULT_TRY(check_name(name));
  return client_.get_range_into(key_for(name), offset, length, out);
}

Result<uint64_t> S3Storage::size(std::string_view name) {
  BLKVAULT_TRY(check_name(name));
  BLKVAULT_TRY_ASSIGN(auto n, client_.head(key_for(name)));
  if (!n) return fail(ErrorCode::kNotFound, client_.url_for(key_for(name)) + ": not found", ENOENT);
  return *n;
}

Result<bool> S3Storage::exists(std::string_view name) {
  BLKVAULT_TRY(check_name(name));
  BLKVAULT_TRY_ASSIGN(auto n, client_.head(key_for(name)));
  return n.has_value();
}

Result<std::vector<std::string>> S3Storage::list(std::string_view prefix) {
  if (!prefix.empty()) {
    std::string_view p = prefix.back() == '/' ? prefix.substr(0, prefix.size() - 1) : prefix;
    BLKVAULT_TRY(check_name(p));
  }
  const std::string& root = client_.endpoint().prefix;
  BLKVAULT_TRY_ASSIGN(auto objects, client_.list(root + std::string(prefix)));
  std::vector<std::string> out;
  out.reserve(objects.size());
  for (auto& o : objects) {
    if (o.key.size() <= root.size()) continue;
    std::string name = o.key.substr(root.size());
    if (check_name(name)) out.push_back(std::move(name));  // skip keys that are no repository name
  }
  return out;
}

Result<std::vector<std::string>> S3Storage::list_unpublished(std::string_view) { return std::vector<std::string>(); }

Status S3Storage::remove(std::string_view name) {
  BLKVAULT_TRY(check_name(name));
  return client_.remove(key_for(name));
}

Result<uint64_t> S3Storage::abort_stale_uploads() {
  BLKVAULT_TRY_ASSIGN(auto uploads, client_.list_multipart(client_.endpoint().prefix));
  for (const auto& u : uploads) BLKVAULT_TRY(client_.abort_multipart(u.key, u.upload_id));
  return static_cast<uint64_t>(uploads.size());
}

Result<std::vector<s3::Upload>> S3Storage::list_uploads() { return client_.list_multipart(client_.endpoint().prefix); }

Status S3Storage::abort_upload(const std::string& key, const std::string& upload_id) {
  return client_.abort_multipart(key, upload_id);
}

}  // namespace blkvault::repo
