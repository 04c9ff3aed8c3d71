// repo/s3_storage.h — a repository in S3-compatible object storage
// ("s3:https://HOST[:PORT]/BUCKET[/PREFIX]"), behind the Storage interface.
//
// How the Storage contract maps onto S3 (docs/OBJECT-STORAGE.md):
//   - put() and small Writers are one PUT with If-None-Match: * (412 -> "already
//     exists"), carrying Content-MD5 and a signed SHA-256; S3 publishes an
//     object atomically and durably when the PUT returns;
//   - a Writer whose data outgrows the part size becomes a multipart upload
//     (parts sent while it is written, up to uploads_in_flight() at once, so
//     memory stays at that many parts plus one); commit()
//     completes it (refusing an existing name: HEAD first, and If-None-Match: *
//     where the store honours it on completion); a Writer dropped without
//     commit() aborts the upload, so nothing becomes visible;
//   - list_unpublished() returns nothing: an unfinished write is an unfinished
//     multipart upload, not an object; abort_stale_uploads() removes those left
//     by killed writers (gc calls it under the repository lock);
//   - names map to keys "<PREFIX>/<name>".
// Thread-safety: as Storage (the client pools its connections).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "repo/s3_client.h"
#include "repo/storage.h"

namespace blkvault::repo {

// True for "s3:…" repository addresses.
bool is_remote_repository(std::string_view repo);

class S3Storage final : public Storage {
 public:
  // Credentials and addressing from the environment (s3::apply_environment).
  // `upload_limiter` (may be null): s3::ClientOptions::upload_limiter.
  static Result<std::unique_ptr<S3Storage>> open(const std::string& url,
                                                 std::shared_ptr<RateLimiter> upload_limiter = nullptr);
  static std::unique_ptr<S3Storage> open(s3::Endpoint endpoint, s3::ClientOptions options);

  std::string description() const override;
  Status put(std::string_view name, std::span<const uint8_t> data) override;
  Result<std::unique_ptr<Writer>> create(std::string_view name) override;
  Result<std::vector<uint8_t>> get(std::string_view name) override;
  Result<std::vector<uint8_t>> get_range(std::string_view name, uint64_t offset, uint64_t length) override;
  Status get_range_into(std::string_view name, uint64_t offset, uint64_t length, std::vector<uint8_t>& out) override;
  Result<uint64_t> size(std::string_view name) override;
  Result<bool> exists(std::string_view name) override;
  Result<std::vector<std::string>> list(std::string_view prefix) override;
  Result<std::vector<std::string>> list_unpublished(std::string_view prefix) override;
  Status remove(std::string_view name) override;

  // Aborts the multipart uploads under the repository's prefix (unfinished
  // writes of killed processes). REQUIRES: the repository lock. Returns how many.
  Result<uint64_t> abort_stale_uploads();
  // The unfinished multipart uploads under the repository's prefix, and the
  // abort of one (an upload already completed or aborted is not an error).
  // gc condemns those it lists and aborts them once the backups that were
  // running then have ended (repo/condemned.h): a running backup's are in flight.
  Result<std::vector<s3::Upload>> list_uploads();
  Status abort_upload(const std::string& key, const std::string& upload_id);
  // Objects larger than this are written as multipart uploads of this part size.
  void set_part_size(size_t bytes) { part_size_ = bytes; }
  size_t part_size() const { return part_size_; }
  // How many parts travel at once (each on its own connection), over all of
  // this storage's Writers together: a backup finishing one pack while it
  // fills the next holds no more parts in memory than one writing alone.
  void set_uploads_in_flight(size_t n) { uploads_in_flight_ = n == 0 ? 1 : n; }
  size_t uploads_in_flight() const { return uploads_in_flight_; }
  // A slot for one part upload: waits while uploads_in_flight() are under way.
  void acquire_upload_slot();
  void release_upload_slot();
  // An empty buffer with room for a part, reused from part to part and from
  // pack to pack: a new one per part was mapped and faulted in again each
  // time. give_part_buffer() takes one back (keeping a few).
  std::vector<uint8_t> take_part_buffer();
  void give_part_buffer(std::vector<uint8_t> buffer);
  s3::Client& client() { return client_; }
  std::string key_for(std::string_view name) const { return client_.endpoint().prefix + std::string(name); }

 private:
  S3Storage(s3::Endpoint endpoint, s3::ClientOptions options) : client_(std::move(endpoint), std::move(options)) {}
  s3::Client client_;
  size_t part_size_ = 16u << 20;
  size_t uploads_in_flight_ = 3;
  std::mutex slots_mu_;
  std::condition_variable slots_cv_;
  size_t slots_used_ = 0;
  std::mutex parts_mu_;
  std::vector<std::vector<uint8_t>> spare_parts_;  // guarded by parts_mu_
};

}  // namespace blkvault::repo
