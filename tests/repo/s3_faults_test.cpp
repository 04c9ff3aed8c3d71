// The repository on S3 when the network and the gateway misbehave, against a
// real Ceph RADOS Gateway (tests/ceph_gateway.h; skips, saying why, without
// one): through a proxy that resets, refuses with 503, delays and cuts
// connections (tests/fault_proxy.h), backups and restores lose nothing; the
// gateway killed in the middle of a backup makes that backup fail cleanly,
// and once it is back the next backup succeeds and everything verifies.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>

#include "ceph_gateway.h"
#include "fault_proxy.h"
#include "repo/s3_storage.h"
#include "repo_support.h"

namespace blkvault::repo {
namespace {

// Forwards to another Storage, calling `before_create` first.
class HookStorage final : public ForwardingStorage {
 public:
  HookStorage(std::unique_ptr<Storage> inner, std::function<void(std::string_view)> before_create)
      : ForwardingStorage(std::move(inner)), hook_(std::move(before_create)) {}
  Result<std::unique_ptr<Writer>> create(std::string_view n) override {
    hook_(n);
    return ForwardingStorage::create(n);
  }

 private:
  std::function<void(std::string_view)> hook_;
};

class S3FaultTest : public RepositoryTest {
 protected:
  void SetUp() override {
    std::string why;
    gw_ = test::CephGateway::get(&why);
    if (gw_ == nullptr) GTEST_SKIP() << why;
  }
  // A client on `url` with one connection per request and short backoffs.
  static std::unique_ptr<Storage> client_for(const std::string& url, int attempts) {
    auto e = s3::parse_url(url);
    s3::ClientOptions o;
    EXPECT_TRUE(s3::apply_environment(*e, o));
    o.reuse_connections = false;
    o.first_backoff_s = 0.05;
    o.max_attempts = attempts;
    o.stall_timeout_s = 5;
    return S3Storage::open(*e, o);
  }
  test::CephGateway* gw_ = nullptr;
};

TEST_F(S3FaultTest, ResetsSlowDownsDelaysAndCutAnswersAreRetriedAndNothingIsLost) {
  test::FaultProxy proxy(gw_->port());
  const std::string bucket = gw_->new_bucket();
  remote_ = "s3:http://127.0.0.1:" + std::to_string(proxy.port()) + "/" + bucket + "/repo";
  init(256 << 10);
  proxy.every = 3;  // every third request meets a fault
  OpenOptions o;
  o.write = true;
  o.cache_dir = cache_dir();
  o.wrap_storage = [&](std::unique_ptr<Storage>) { return client_for(remote_, 6); };
  auto repo = Repository::open(repo_path(), o);
  ASSERT_TRUE(repo) << repo.error().message();
  std::mt19937_64 rng(41);
  SimDevice d{"/dev/sdz", std::vector<uint8_t>(40 * kChunk + 321)};
  d.mutate(rng, 20);
  std::map<GenerationId, std::vector<uint8_t>> history;
  for (int i = 0; i < 3; ++i) {
    auto g = backup(**repo, {&d}, false);
    ASSERT_TRUE(g) << g.error().message();
    history[g->id] = d.bytes;
    d.mutate(rng, 6);
  }
  for (const auto& [g, bytes] : history) expect_restores(**repo, g, d, bytes);
  auto v = (*repo)->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_TRUE(v->clean());
  repo->reset();
  for (int f = 0; f < 4; ++f) EXPECT_GT(proxy.faults[f].load(), 0) << "fault kind " << f << " never happened";
  // And the same repository straight on the gateway, with no proxy: identical.
  proxy.every = 0;
  remote_ = gw_->repo_url(bucket, "repo");
  auto direct = open(false);
  ASSERT_TRUE(direct);
  EXPECT_EQ(direct->generations()->size(), 3u);
  for (const auto& [g, bytes] : history) expect_restores(*direct, g, d, bytes);
}

TEST_F(S3FaultTest, MultipartUploadsInParallelSurviveFaults) {
  test::FaultProxy proxy(gw_->port());
  const std::string bucket = gw_->new_bucket();
  auto direct = S3Storage::open(gw_->repo_url(bucket));
  ASSERT_TRUE(direct);
  ASSERT_TRUE((*direct)->client().create_bucket());
  auto faulty = client_for("s3:http://127.0.0.1:" + std::to_string(proxy.port()) + "/" + bucket, 6);
  auto* s3 = dynamic_cast<S3Storage*>(faulty.get());
  s3->set_part_size(5u << 20);
  s3->set_uploads_in_flight(3);
  std::vector<uint8_t> big((26u << 20) + 777);  // 6 parts
  std::mt19937_64 rng(8);
  for (auto& x : big) x = static_cast<uint8_t>(rng());
  proxy.every = 2;
  for (int i = 0; i < 3; ++i) {
    const std::string name = "packs/aa/big" + std::to_string(i);
    auto w = s3->create(name);
    ASSERT_TRUE(w);
    for (size_t off = 0; off < big.size(); off += 3000017) {
      ASSERT_TRUE((*w)->append(std::span(big).subspan(off, std::min<size_t>(3000017, big.size() - off))));
    }
    auto st = (*w)->commit();
    ASSERT_TRUE(st) << st.error().message();
    auto back = (*direct)->get(name);
    ASSERT_TRUE(back);
    EXPECT_TRUE(*back == big) << name;
  }
  EXPECT_GT(proxy.faults[test::FaultProxy::kReset].load() + proxy.faults[test::FaultProxy::kCut].load(), 0);
  EXPECT_TRUE((*direct)->client().list_multipart("")->empty());
}

TEST_F(S3FaultTest, ABodyDamagedOnTheWayIsRefusedByTheStoreAndSentAgain) {
  test::FaultProxy proxy(gw_->port());
  const std::string bucket = gw_->new_bucket();
  const std::string via = "s3:http://127.0.0.1:" + std::to_string(proxy.port()) + "/" + bucket + "/x";
  std::mt19937_64 rng(44);
  std::vector<uint8_t> body(3 << 20);
  for (auto& b : body) b = static_cast<uint8_t>(rng());
  auto direct = client_for(gw_->repo_url(bucket, "x"), 1);
  ASSERT_TRUE(direct);
  ASSERT_TRUE(static_cast<S3Storage*>(direct.get())->client().create_bucket());
  // Every request damaged and one attempt: the store keeps nothing.
  proxy.flip_every = 1;
  {
    auto once = client_for(via, 1);
    ASSERT_TRUE(once);
    auto st = once->put("damaged", body);
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message().find("HTTP 400 XAmzContentSHA256Mismatch"), std::string::npos) << st.error().message();
    EXPECT_EQ(proxy.flipped.load(), 1);
    auto got = direct->get("damaged");
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error().code(), ErrorCode::kNotFound);
  }
  // Every second request damaged: each damaged upload is sent again, and
  // what the store holds is what was sent (a plain object, multipart parts).
  proxy.flip_every = 2;
  auto retrying = client_for(via, 4);
  ASSERT_TRUE(retrying);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(retrying->put("object-" + std::to_string(i), body));
  static_cast<S3Storage*>(retrying.get())->set_part_size(5 << 20);  // two parts
  {
    auto w = retrying->create("multipart");
    ASSERT_TRUE(w);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*w)->append(body)) << i;
    ASSERT_TRUE((*w)->commit());
  }
  EXPECT_GT(proxy.flipped.load(), 3);
  for (int i = 0; i < 4; ++i) {
    auto got = direct->get("object-" + std::to_string(i));
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_TRUE(*got == body) << i;
  }
  auto got = direct->get("multipart");
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_EQ(got->size(), 3 * body.size());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::equal(body.begin(), body.end(), got->begin() + i * body.size())) << i;
}

TEST_F(S3FaultTest, AGatewayKilledMidBackupFailsItCleanlyAndTheNextOneSucceeds) {
  if (!gw_->can_restart()) GTEST_SKIP() << "the gateway (BLKVAULT_TEST_S3_ENDPOINT) is not this process's to kill";
  remote_ = gw_->repo_url(gw_->new_bucket(), "repo");
  init(128 << 10);  // small packs: many uploads
  std::mt19937_64 rng(43);
  SimDevice d{"/dev/sdk", std::vector<uint8_t>(48 * kChunk)};
  for (auto& x : d.bytes) x = static_cast<uint8_t>(rng());
  std::atomic<int> packs{0};
  std::atomic<bool> killed{false};
  OpenOptions o;
  o.write = true;
  o.cache_dir = cache_dir();
  o.wrap_storage = [&](std::unique_ptr<Storage>) -> std::unique_ptr<Storage> {
    return std::make_unique<HookStorage>(client_for(remote_, 3), [&](std::string_view name) {
      if (name.substr(0, 6) == "packs/" && ++packs == 4 && !killed.exchange(true)) gw_->kill_gateway();
    });
  };
  auto repo = Repository::open(repo_path(), o);
  ASSERT_TRUE(repo) << repo.error().message();
  const auto first = d.bytes;
  d.mark(0, d.bytes.size());
  auto g = backup(**repo, {&d}, true);
  ASSERT_TRUE(killed.load());
  ASSERT_FALSE(g) << "a backup whose gateway died cannot have committed";
  ASSERT_TRUE(gw_->restart_gateway());
  auto gens = (*repo)->generations();
  ASSERT_TRUE(gens);
  ASSERT_EQ(gens->size(), 1u);
  EXPECT_EQ(gens->at(0).state, GenerationState::kFailed);
  repo->reset();  // releases the lock on the gateway that is back

  packs = -1000000;  // no more kills
  repo = Repository::open(repo_path(), o);
  ASSERT_TRUE(repo) << repo.error().message();
  d.mark(0, d.bytes.size());
  auto g2 = backup(**repo, {&d}, true);
  ASSERT_TRUE(g2) << g2.error().message();
  expect_restores(**repo, g2->id, d, first);
  // It sent only what the failed one had not uploaded: at least the first two
  // packs (two random chunks each) were complete before the gateway died.
  EXPECT_LE(g2->devices.at(0).new_bytes, d.bytes.size() - 4 * kChunk);
  auto report = (*repo)->gc(GcOptions{}, nullptr);
  ASSERT_TRUE(report) << report.error().message();
  auto v = (*repo)->verify(VerifyOptions{.data = true}, nullptr, {});
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->clean());
  auto listed = (*repo)->storage().list("packs/");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), (*repo)->stats()->packs) << "no pack is left unreferenced";
}

}  // namespace
}  // namespace blkvault::repo
