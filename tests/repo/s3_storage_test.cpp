// The S3 client and S3Storage against a real Ceph RADOS Gateway
// (tests/ceph_gateway.h): the Storage contract, multipart uploads, listings
// across pages, conditional writes, errors, retries, and the object lock.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include "ceph_gateway.h"
#include "repo/lock.h"
#include "repo/s3_storage.h"

namespace blkvault::repo {
namespace {

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
std::string text(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

class S3StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    gw_ = test::CephGateway::get(&why);
    if (gw_ == nullptr) GTEST_SKIP() << why;
    bucket_ = gw_->new_bucket();
    url_ = gw_->repo_url(bucket_, "some/prefix");
    auto s = S3Storage::open(url_);
    ASSERT_TRUE(s) << s.error().message();
    storage_ = std::move(*s);
    ASSERT_TRUE(storage_->client().create_bucket());
  }
  test::CephGateway* gw_ = nullptr;
  std::string bucket_, url_;
  std::unique_ptr<S3Storage> storage_;
};

TEST(S3Url, ParsesRepositoryAddresses) {
  auto e = s3::parse_url("s3:https://s3.example.com:9000/backups/hosts/db1/");
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->scheme, "https");
  EXPECT_EQ(e->host, "s3.example.com");
  EXPECT_EQ(e->port, 9000);
  EXPECT_EQ(e->bucket, "backups");
  EXPECT_EQ(e->prefix, "hosts/db1/");
  EXPECT_TRUE(e->path_style);
  auto aws = s3::parse_url("s3:https://s3.eu-west-1.amazonaws.com/bucket");
  ASSERT_TRUE(aws);
  EXPECT_FALSE(aws->path_style);
  EXPECT_EQ(aws->prefix, "");
  EXPECT_EQ(aws->port, 0);
  for (const char* bad : {"s3:ftp://h/bucket", "s3:https://h", "s3:https://h/ab", "s3:https://h:99999/bucket",
                          "s3:https://key:secret@h/bucket", "s3:https://h/Bucket", "s3:https://h/bucket/a//b"}) {
    auto r = s3::parse_url(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find("(expected s3:https://HOST[:PORT]/BUCKET[/PREFIX])"), std::string::npos);
  }
}

TEST(S3Url, CredentialsComeFromTheEnvironment) {
  const char* was = std::getenv("AWS_ACCESS_KEY_ID");
  const std::string saved = was != nullptr ? was : "";
  ::unsetenv("AWS_ACCESS_KEY_ID");
  auto s = S3Storage::open("s3:http://127.0.0.1:1/bucket");
  if (was != nullptr) ::setenv("AWS_ACCESS_KEY_ID", saved.c_str(), 1);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(),
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a credentials file "
            "(BLKVAULT_S3_CREDENTIALS_FILE, or credentials-file in the config) (see docs/OBJECT-STORAGE.md)");
}

TEST(S3Client, RetriesATransportFailureThenReportsIt) {
  auto e = s3::parse_url("s3:http://127.0.0.1:9/bucket");  // discard port: nothing listens
  ASSERT_TRUE(e);
  s3::ClientOptions o;
  o.credentials = {"AK", "SK", ""};
  o.max_attempts = 3;
  o.first_backoff_s = 0.01;
  s3::Client c(*e, o);
  auto r = c.get("key");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kIo);
  EXPECT_EQ(r.error().message().rfind("after 3 attempts: GET s3:http://127.0.0.1:9/bucket/key: ", 0), 0u)
      << r.error().message();
}

TEST_F(S3StorageTest, PutGetRangesSizeExistsAndList) {
  ASSERT_TRUE(storage_->put("packs/ab/abcdef", bytes("hello world")));
  ASSERT_TRUE(storage_->put("config", bytes("cfg")));
  EXPECT_EQ(text(*storage_->get("packs/ab/abcdef")), "hello world");
  EXPECT_EQ(text(*storage_->get_range("packs/ab/abcdef", 6, 5)), "world");
  EXPECT_EQ(*storage_->size("packs/ab/abcdef"), 11u);
  EXPECT_TRUE(*storage_->exists("config"));
  EXPECT_FALSE(*storage_->exists("nothing"));
  EXPECT_EQ(*storage_->list("packs/"), std::vector<std::string>{"packs/ab/abcdef"});
  EXPECT_EQ(*storage_->list(""), (std::vector<std::string>{"config", "packs/ab/abcdef"}));
  // The keys carry the prefix; nothing outside it is listed.
  auto all = storage_->client().list("");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].key, "some/prefix/config");
  EXPECT_TRUE(storage_->list_unpublished("")->empty());
}

TEST_F(S3StorageTest, MissingObjectsAndShortRanges) {
  auto g = storage_->get("manifests/0001");
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(g.error().message().rfind("GET " + url_ + "/manifests/0001: HTTP 404 NoSuchKey", 0), 0u) << g.error().message();
  auto sz = storage_->size("x");
  ASSERT_FALSE(sz);
  EXPECT_EQ(sz.error().code(), ErrorCode::kNotFound);
  ASSERT_TRUE(storage_->put("short", bytes("12345")));
  auto r = storage_->get_range("short", 3, 10);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  auto beyond = storage_->get_range("short", 50, 1);
  ASSERT_FALSE(beyond);
  EXPECT_EQ(beyond.error().code(), ErrorCode::kCorrupt);
  EXPECT_TRUE(storage_->remove("never-was"));
  EXPECT_TRUE(storage_->remove("short"));
  EXPECT_FALSE(*storage_->exists("short"));
}

TEST_F(S3StorageTest, NeverOverwritesAnExistingObject) {
  ASSERT_TRUE(storage_->put("config", bytes("one")));
  auto st = storage_->put("config", bytes("two"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.error().sys_errno(), EEXIST);
  EXPECT_EQ(st.error().message(), url_ + "/config already exists");
  EXPECT_EQ(text(*storage_->get("config")), "one");
  // A Writer too.
  auto w = storage_->create("config");
  ASSERT_TRUE(w);
  ASSERT_TRUE((*w)->append(bytes("three")));
  EXPECT_FALSE((*w)->commit());
  EXPECT_EQ(text(*storage_->get("config")), "one");
}

TEST_F(S3StorageTest, LargeWritesAreMultipartAndAnUncommittedOneLeavesNothing) {
  storage_->set_part_size(5u << 20);  // S3's smallest part
  storage_->set_uploads_in_flight(2);  // 4 parts, at most 2 travelling at once: ETags must stay in order
  std::vector<uint8_t> big((17u << 20) + 12345);
  std::mt19937_64 rng(3);
  for (auto& b : big) b = static_cast<uint8_t>(rng());
  {
    auto w = storage_->create("packs/00/big");
    ASSERT_TRUE(w);
    for (size_t off = 0; off < big.size(); off += 1000003) {
      const size_t n = std::min<size_t>(1000003, big.size() - off);
      ASSERT_TRUE((*w)->append(std::span(big).subspan(off, n)));
    }
    EXPECT_EQ((*w)->size(), big.size());
    auto uploads = storage_->client().list_multipart("");
    ASSERT_TRUE(uploads);
    EXPECT_EQ(uploads->size(), 1u) << "parts go out while the pack is written";
    EXPECT_FALSE(*storage_->exists("packs/00/big")) << "invisible until committed";
    ASSERT_TRUE((*w)->commit());
  }
  EXPECT_EQ(*storage_->size("packs/00/big"), big.size());
  EXPECT_TRUE(*storage_->get("packs/00/big") == big);
  auto tail = storage_->get_range("packs/00/big", big.size() - 100, 100);
  ASSERT_TRUE(tail);
  EXPECT_TRUE(std::equal(tail->begin(), tail->end(), big.end() - 100));
  EXPECT_TRUE(storage_->client().list_multipart("")->empty());
  {
    auto w = storage_->create("packs/00/abandoned");
    ASSERT_TRUE(w);
    ASSERT_TRUE((*w)->append(big));
  }  // dropped without commit: the upload is aborted
  EXPECT_FALSE(*storage_->exists("packs/00/abandoned"));
  EXPECT_TRUE(storage_->client().list_multipart("")->empty());
  // A multipart commit refuses an existing name too.
  auto w = storage_->create("packs/00/big");
  ASSERT_TRUE(w);
  ASSERT_TRUE((*w)->append(big));
  auto st = (*w)->commit();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), url_ + "/packs/00/big already exists");
}

TEST_F(S3StorageTest, KilledWritersUploadsAreAbortedByTheLockHolder) {
  storage_->set_part_size(5u << 20);
  auto id = storage_->client().create_multipart(storage_->key_for("packs/11/orphan"));
  ASSERT_TRUE(id);
  std::vector<uint8_t> part(5u << 20, 1);
  ASSERT_TRUE(storage_->client().upload_part(storage_->key_for("packs/11/orphan"), *id, 1, part));
  auto n = storage_->abort_stale_uploads();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_TRUE(storage_->client().list_multipart("")->empty());
}

TEST_F(S3StorageTest, ListingsFollowContinuationTokens) {
  std::vector<std::string> want;
  for (int i = 0; i < 23; ++i) {
    const std::string name = "manifests/" + std::to_string(1000 + i);
    ASSERT_TRUE(storage_->put(name, bytes("m")));
    want.push_back(name);
  }
  auto objects = storage_->client().list(storage_->key_for("manifests/"), /*page_size=*/5);
  ASSERT_TRUE(objects) << objects.error().message();
  ASSERT_EQ(objects->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ((*objects)[i].key, storage_->key_for(want[i]));
  EXPECT_EQ(*storage_->list("manifests/"), want);
}

TEST_F(S3StorageTest, AWrongSecretIsAPermissionErrorNamingTheStoresReason) {
  auto e = s3::parse_url(url_);
  ASSERT_TRUE(e);
  s3::ClientOptions o;
  o.credentials = {gw_->access_key(), "not-the-secret", ""};
  auto bad = S3Storage::open(*e, o);
  auto r = bad->get("config");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kPermission);
  EXPECT_NE(r.error().message().find("HTTP 403 SignatureDoesNotMatch"), std::string::npos) << r.error().message();
}

TEST_F(S3StorageTest, VirtualHostAddressingReachesTheSameBucket) {
  // rgw answers BUCKET.localhost when "rgw dns name = localhost"; curl resolves *.localhost to loopback.
  auto e = s3::parse_url(url_);
  ASSERT_TRUE(e);
  e->path_style = false;
  e->host = "localhost";
  s3::ClientOptions o;
  o.credentials = {gw_->access_key(), gw_->secret_key(), ""};
  auto vh = S3Storage::open(*e, o);
  ASSERT_TRUE(storage_->put("config", bytes("via path style")));
  auto got = vh->get("config");
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(text(*got), "via path style");
  ASSERT_TRUE(vh->put("other", bytes("via virtual host")));
  EXPECT_EQ(text(*storage_->get("other")), "via virtual host");
}

TEST_F(S3StorageTest, ObjectLockIsExclusiveNamesItsHolderAndIsReleased) {
  ObjectLockOptions o;
  auto first = RepoLock::acquire_object(*storage_, 0, true, o);
  ASSERT_TRUE(first) << first.error().message();
  auto second = RepoLock::acquire_object(*storage_, 0, true, o);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kLocked);
  EXPECT_EQ(second.error().message().rfind("repository " + url_ + " is locked by pid " + std::to_string(::getpid()) +
                                               " on host ",
                                           0),
            0u)
      << second.error().message();
  auto holder = RepoLock::object_holder(*storage_, o);
  ASSERT_TRUE(holder && *holder);
  EXPECT_EQ(holder->value().rfind("pid " + std::to_string(::getpid()), 0), 0u);
  // Waiting: the lock is had once the holder lets go.
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    first = fail(ErrorCode::kInternal, "released");
  });
  auto waited = RepoLock::acquire_object(*storage_, 20, true, o);
  release.join();
  ASSERT_TRUE(waited) << waited.error().message();
  waited = fail(ErrorCode::kInternal, "released");
  EXPECT_FALSE(*storage_->exists("lock"));
  EXPECT_TRUE(storage_->list("lock-refresh/")->empty());
  EXPECT_FALSE(RepoLock::object_holder(*storage_, o)->has_value());
}

TEST_F(S3StorageTest, AStaleLockIsBrokenALiveOneIsNot) {
  // A dead holder's lock, last alive 10 s ago, with stale_s = 5.
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count() - 10000;
  const std::string dead = "holder: pid 1 on host gone since 2026-01-01T00:00:00Z\ntoken: deadbeef\ntime_ms: " +
                           std::to_string(ms) + "\n";
  ASSERT_TRUE(storage_->put("lock", bytes(dead)));
  ObjectLockOptions o;
  o.stale_s = 5;
  o.refresh_s = 0.5;
  EXPECT_EQ(**RepoLock::object_holder(*storage_, o),
            "pid 1 on host gone since 2026-01-01T00:00:00Z (stale: the next writer will break it)");
  std::string broke;
  auto lock = RepoLock::acquire_object(*storage_, 0, true, o, &broke);
  ASSERT_TRUE(lock) << lock.error().message();
  EXPECT_EQ(broke, "pid 1 on host gone since 2026-01-01T00:00:00Z");
  // A live holder refreshes: after more than stale_s the lock still holds.
  o.stale_s = 2;
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  auto other = RepoLock::acquire_object(*storage_, 0, true, o);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), ErrorCode::kLocked);
  EXPECT_FALSE(storage_->list("lock-refresh/")->empty());
}

TEST_F(S3StorageTest, ALockOfADeadProcessOfThisHostIsBrokenAtOnce) {
  ObjectLockOptions o;  // 30 min staleness: only the dead pid can free it
  // A child takes the lock and dies without releasing it (as on SIGKILL).
  pid_t child = ::fork();
  if (child == 0) {
    auto l = RepoLock::acquire_object(*storage_, 0, true, o);
    if (!l) _exit(1);
    std::_Exit(0);  // no destructors: the lock object stays
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(*storage_->exists("lock"));
  auto h = RepoLock::object_holder(*storage_, o);
  ASSERT_TRUE(h && *h);
  EXPECT_NE(h->value().find("pid " + std::to_string(child) + " on host "), std::string::npos);
  EXPECT_NE(h->value().find("(that process is gone: the next writer will break it)"), std::string::npos) << **h;
  std::string broke;
  auto lock = RepoLock::acquire_object(*storage_, 0, true, o, &broke);
  ASSERT_TRUE(lock) << lock.error().message();
  EXPECT_EQ(broke.rfind("pid " + std::to_string(child) + " on host ", 0), 0u) << broke;
  // A live process's lock (this one's) is not broken.
  auto other = RepoLock::acquire_object(*storage_, 0, true, o);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), ErrorCode::kLocked);
}

TEST_F(S3StorageTest, ABackupMarkerHoldsOffTheExclusiveLockUntilItEnds) {
  ObjectLockOptions o;
  auto backup = RepoLock::acquire_shared_object(*storage_, 0, true, o);
  ASSERT_TRUE(backup) << backup.error().message();
  auto second = RepoLock::acquire_shared_object(*storage_, 0, true, o);
  ASSERT_TRUE(second) << "backups share the repository: " << second.error().message();
  EXPECT_EQ(storage_->list("locks/")->size(), 2u);
  auto gc = RepoLock::acquire_object(*storage_, 0, true, o);
  ASSERT_FALSE(gc);
  EXPECT_EQ(gc.error().code(), ErrorCode::kLocked);
  EXPECT_EQ(gc.error().message().rfind("repository " + url_ + " has a backup in progress: pid " +
                                           std::to_string(::getpid()) + " on host ",
                                       0),
            0u)
      << gc.error().message();
  EXPECT_NE(gc.error().message().find(" and 1 more"), std::string::npos) << gc.error().message();
  EXPECT_FALSE(*storage_->exists("lock")) << "the refused exclusive holder let go of the lock";
  auto holders = RepoLock::object_backups(*storage_, o);
  ASSERT_TRUE(holders);
  ASSERT_EQ(holders->size(), 2u);
  EXPECT_EQ((*holders)[0].rfind("pid " + std::to_string(::getpid()) + " on host ", 0), 0u) << (*holders)[0];
  EXPECT_TRUE(backup->check_held());
  backup = fail(ErrorCode::kInternal, "released");
  second = fail(ErrorCode::kInternal, "released");
  EXPECT_TRUE(storage_->list("locks/")->empty());
  auto now = RepoLock::acquire_object(*storage_, 0, true, o);
  ASSERT_TRUE(now) << now.error().message();
  // While it is held, a backup steps back (its marker removed) and waits.
  auto refused = RepoLock::acquire_shared_object(*storage_, 0, true, o);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kLocked);
  EXPECT_EQ(refused.error().message().rfind("repository " + url_ + " is locked by pid ", 0), 0u);
  EXPECT_TRUE(storage_->list("locks/")->empty());
}

TEST_F(S3StorageTest, AStaleBackupMarkerOrOneOfADeadProcessDoesNotBlockTheLock) {
  // Another host's backup that died 10 s ago, with stale_s = 5.
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count() - 10000;
  ASSERT_TRUE(storage_->put("locks/backup-deadbeef",
                            bytes("holder: pid 1 on host gone since 2026-01-01T00:00:00Z\ntoken: deadbeef\ntime_ms: " +
                                  std::to_string(ms) + "\npid: 1\nhost_key: 0000000000000000\n")));
  ObjectLockOptions o;
  o.stale_s = 5;
  o.refresh_s = 1;
  EXPECT_EQ(*RepoLock::object_backups(*storage_, o),
            std::vector<std::string>{"pid 1 on host gone since 2026-01-01T00:00:00Z (stale: the next prune or gc will remove it)"});
  std::vector<std::string> broke;
  {
    auto lock = RepoLock::acquire_object(*storage_, 0, true, o, nullptr, &broke);
    ASSERT_TRUE(lock) << lock.error().message();
  }
  EXPECT_EQ(broke, std::vector<std::string>{"pid 1 on host gone since 2026-01-01T00:00:00Z"});
  EXPECT_TRUE(storage_->list("locks/")->empty());
  // A live backup refreshes: after more than stale_s its marker still holds.
  auto live = RepoLock::acquire_shared_object(*storage_, 0, true, o);
  ASSERT_TRUE(live);
  std::this_thread::sleep_for(std::chrono::milliseconds(6500));
  auto held_off = RepoLock::acquire_object(*storage_, 0, true, o);
  ASSERT_FALSE(held_off);
  EXPECT_EQ(held_off.error().code(), ErrorCode::kLocked);
  live = fail(ErrorCode::kInternal, "released");
  // A backup of this host killed without cleaning up: its pid is gone, so
  // the marker is removed at once even with the 30-minute default.
  ObjectLockOptions defaults;
  pid_t child = ::fork();
  if (child == 0) {
    auto l = RepoLock::acquire_shared_object(*storage_, 0, true, defaults);
    if (!l) _exit(1);
    std::_Exit(0);  // no destructors: the marker stays
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(storage_->list("locks/")->size(), 1u);
  broke.clear();
  auto lock = RepoLock::acquire_object(*storage_, 0, true, defaults, nullptr, &broke);
  ASSERT_TRUE(lock) << lock.error().message();
  ASSERT_EQ(broke.size(), 1u);
  EXPECT_EQ(broke[0].rfind("pid " + std::to_string(child) + " on host ", 0), 0u) << broke[0];
}

TEST_F(S3StorageTest, AHolderWhoseMarkerWasBrokenKnowsIt) {
  ObjectLockOptions o;
  auto backup = RepoLock::acquire_shared_object(*storage_, 0, true, o);
  ASSERT_TRUE(backup);
  auto names = storage_->list("locks/");
  ASSERT_EQ(names->size(), 1u);
  ASSERT_TRUE(storage_->remove(names->front()));  // as another host does to a stale marker
  auto st = backup->check_held();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kLocked);
  EXPECT_EQ(st.error().message(), "the backup marker " + names->front() + " of repository " + url_ +
                                      " was removed while this process held it (another host took it for stale: was "
                                      "this process stopped for longer than BLKVAULT_LOCK_STALE_S?)");
}

}  // namespace
}  // namespace blkvault::repo

namespace blkvault::repo {
namespace {

// The upload limit (s3::ClientOptions::upload_limiter) is shared by every
// request: a multipart writer's parallel parts and small PUTs from another
// thread together never go faster than it. Unthrottled, these 14.7 MB take
// ~0.2 s on the test gateway.
TEST_F(S3StorageTest, AnUploadLimitHoldsAcrossParallelUploads) {
  constexpr double kRate = 8e6;  // 8 MB/s
  auto limiter = std::make_shared<RateLimiter>(kRate);
  auto opened = S3Storage::open(url_, limiter);
  ASSERT_TRUE(opened) << opened.error().message();
  std::unique_ptr<S3Storage> limited = std::move(*opened);
  limited->set_part_size(5u << 20);
  limited->set_uploads_in_flight(3);
  std::vector<uint8_t> big(12u << 20);
  std::mt19937_64 rng(11);
  for (auto& b : big) b = static_cast<uint8_t>(rng());
  std::vector<uint8_t> small(256u << 10, 0x5a);

  const auto t0 = std::chrono::steady_clock::now();
  std::thread smalls([&] {
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(limited->put("packs/01/small" + std::to_string(i), small));
  });
  {
    auto w = limited->create("packs/01/big");
    ASSERT_TRUE(w);
    ASSERT_TRUE((*w)->append(big));  // parts of 5, 5 and 2 MiB, up to 3 in flight
    ASSERT_TRUE((*w)->commit());
  }
  smalls.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t total = big.size() + 8 * small.size();
  EXPECT_GE(limiter->bytes_passed(), total);  // more only if a request was retried
  const double floor_s = (static_cast<double>(total) - limiter->burst()) / kRate;  // 1.78 s
  EXPECT_GE(wall, floor_s);
  EXPECT_LT(wall, 3 * floor_s + 10);
  EXPECT_GT(limiter->throttled_seconds(), 0.5 * floor_s);
  EXPECT_LE(limiter->throttled_seconds(), wall);
  std::printf("sent %.2f MB in %.3f s (%.2f MB/s, limit 8), throttled %.3f s\n", total / 1e6, wall,
              total / 1e6 / wall, limiter->throttled_seconds());
  EXPECT_TRUE(*storage_->get("packs/01/big") == big);
  EXPECT_TRUE(*storage_->get("packs/01/small7") == small);
}

}  // namespace
}  // namespace blkvault::repo
