// Encryption at rest: key derivation (known answers), key files, paper keys,
// sealed blobs and manifests (tampering detected), and encrypted repositories
// in both key modes and with both ciphers, round trip and privacy.
#include "repo/crypto.h"

#include <gtest/gtest.h>

#include <random>

#include <sodium.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>

#include "common/file_io.h"
#include "repo/manifest.h"
#include "repo_support.h"

namespace blkvault::repo {
namespace {
namespace fs = std::filesystem;

constexpr KdfParams kFastKdf{1, 64 << 10};  // tests only: Argon2id's minimum cost

std::unique_ptr<Secret> counting_master() {
  auto m = std::make_unique<Secret>(kMasterKeyBytes);
  for (size_t i = 0; i < m->size(); ++i) m->data()[i] = static_cast<uint8_t>(i);
  return m;
}

// The AES-256-GCM that seals blobs (OpenSSL) is libsodium's, byte for byte:
// a repository sealed by either opens with the other, and what fails
// authentication in one fails it in the other.
TEST(CryptoTest, Aes256GcmIsLibsodiumsByteForByte) {
  ASSERT_TRUE(crypto_init());
  if (!crypto_aead_aes256gcm_is_available()) GTEST_SKIP() << "this CPU has no AES-NI: libsodium has no AES-256-GCM here";
  std::mt19937_64 rng(2026);
  auto bytes = [&](size_t n) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    return v;
  };
  for (size_t len : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{4095}, size_t{(1 << 20) + 3}}) {
    SCOPED_TRACE("length " + std::to_string(len));
    const auto key = bytes(32), nonce = bytes(12), msg = bytes(len), ad = bytes(len % 2 ? 32 : 0);
    std::vector<uint8_t> ours(len + 16), theirs(len + 16);
    ASSERT_TRUE(aes256gcm_encrypt(ours.data(), msg.data(), len, ad.data(), ad.size(), nonce.data(), key.data()));
    unsigned long long clen = 0;
    ASSERT_EQ(crypto_aead_aes256gcm_encrypt(theirs.data(), &clen, msg.data(), len, ad.data(), ad.size(), nullptr,
                                            nonce.data(), key.data()),
              0);
    ASSERT_EQ(clen, len + 16);
    EXPECT_TRUE(ours == theirs) << "ciphertext or tag differs from libsodium's";
    std::vector<uint8_t> back(len);
    ASSERT_TRUE(aes256gcm_decrypt(back.data(), theirs.data(), theirs.size(), ad.data(), ad.size(), nonce.data(),
                                  key.data()));
    EXPECT_TRUE(back == msg);
    // Any flipped bit (ciphertext, tag), another AD or nonce: refused by both, nothing left in the output.
    for (size_t at : {size_t{0}, len / 2, len + 15}) {
      if (at >= theirs.size()) continue;
      auto bad = theirs;
      bad[at] ^= 0x10;
      std::vector<uint8_t> out(len, 0xAA);
      EXPECT_FALSE(aes256gcm_decrypt(out.data(), bad.data(), bad.size(), ad.data(), ad.size(), nonce.data(), key.data()))
          << "flipped byte " << at;
      EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0; })) << "flipped byte " << at;
      unsigned long long mlen = 0;
      EXPECT_NE(crypto_aead_aes256gcm_decrypt(out.data(), &mlen, nullptr, bad.data(), bad.size(), ad.data(), ad.size(),
                                              nonce.data(), key.data()),
                0);
    }
    auto other_ad = ad;
    other_ad.push_back(1);
    EXPECT_FALSE(aes256gcm_decrypt(back.data(), theirs.data(), theirs.size(), other_ad.data(), other_ad.size(),
                                   nonce.data(), key.data()));
    auto other_nonce = nonce;
    other_nonce[11] ^= 1;
    EXPECT_FALSE(aes256gcm_decrypt(back.data(), theirs.data(), theirs.size(), ad.data(), ad.size(), other_nonce.data(),
                                   key.data()));
  }
}

TEST(CryptoTest, KeyDerivationKnownAnswers) {
  // Pinned: changing the derivation silently would make every existing
  // repository unreadable.
  auto m = counting_master();
  auto x = Keys::derive(m->view(), Cipher::kXChaCha20Poly1305);
  ASSERT_TRUE(x) << x.error().message();
  EXPECT_EQ((*x)->check_value(), "983185fe9f00b59b2ce4d6f6c6682f3cda53b14e986fb4aa8ab304a4aa929fbe");
  EXPECT_EQ(to_hex(chunk_id((*x)->chunk_key(), std::vector<uint8_t>{'a', 'b', 'c'})), "e88388eb661d080e984fc4896136fab8");
  // The cipher does not change the keys.
  if (preferred_cipher() == Cipher::kAes256Gcm) {
    auto a = Keys::derive(m->view(), Cipher::kAes256Gcm);
    ASSERT_TRUE(a);
    EXPECT_EQ((*a)->check_value(), (*x)->check_value());
  }
}

TEST(CryptoTest, KeyFilesOpenOnlyWithTheirPassphrase) {
  auto m = counting_master();
  auto text = wrap_master_key(*m, "correct horse", kFastKdf, "k1", "2026-11-25T00:00:00Z");
  ASSERT_TRUE(text) << text.error().message();
  EXPECT_EQ(text->find(blkvault::to_hex(m->view())), std::string::npos) << "the key file must not hold the key in clear";
  auto back = unwrap_master_key(*text, "correct horse", "k1");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(blkvault::to_hex((*back)->view()), blkvault::to_hex(m->view()));
  auto wrong = unwrap_master_key(*text, "correct hors", "k1");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::kKey);
  EXPECT_EQ(wrong.error().message(), "wrong passphrase");
  auto junk = unwrap_master_key("{\"x\": 1}", "p", "keys/zz");
  ASSERT_FALSE(junk);
  EXPECT_EQ(junk.error().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(junk.error().message().rfind("keys/zz is not a blkvault key file: ", 0), 0u) << junk.error().message();
  // A flipped byte of the wrapped key is not a different key: it fails.
  auto damaged = *text;
  const auto at = damaged.find("\"wrapped\": \"") + 12;
  damaged[at] = damaged[at] == '0' ? '1' : '0';
  EXPECT_FALSE(unwrap_master_key(damaged, "correct horse", "k1"));
}

TEST(CryptoTest, PaperKeysRoundTripAndCatchTypos) {
  auto m = counting_master();
  const std::string paper = paper_key(*m, "repo-1");
  EXPECT_EQ(paper.rfind("blkvault master key of repository repo-1\n", 0), 0u) << paper;
  auto back = parse_paper_key(paper, "repo-1");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(blkvault::to_hex((*back)->view()), blkvault::to_hex(m->view()));
  std::string typo = paper;
  const auto at = typo.find('\n') + 3;
  typo[at] = typo[at] == 'a' ? 'b' : 'a';
  auto bad = parse_paper_key(typo, "repo-1");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "the paper key's checksum does not match (a typo in the digits?)");
  auto other = parse_paper_key(paper, "repo-2");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().message(), "this paper key is for repository repo-1, not repo-2");
}

class SealedBlobTest : public ::testing::TestWithParam<Cipher> {};

TEST_P(SealedBlobTest, EveryFlippedBitIsTamperingAndPlaintextIsRefused) {
  if (GetParam() == Cipher::kAes256Gcm && preferred_cipher() != Cipher::kAes256Gcm) {
    GTEST_SKIP() << "this CPU has no AES-NI: AES-256-GCM cannot run here";
  }
  auto m = counting_master();
  auto keys = Keys::derive(m->view(), GetParam());
  ASSERT_TRUE(keys);
  ChunkCodec codec(3, *keys);
  std::vector<uint8_t> data(3000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i % 7 == 0 ? i : 'x');
  const ChunkId id = chunk_id((*keys)->chunk_key(), data);
  auto blob = codec.seal(id, data);
  ASSERT_TRUE(blob);
  // Not the plaintext, not even compressed plaintext.
  EXPECT_EQ(std::search(blob->begin(), blob->end(), data.begin() + 1, data.begin() + 40), blob->end());
  auto open = [&](const std::vector<uint8_t>& b) -> Result<std::vector<uint8_t>> {
    BLKVAULT_TRY_ASSIGN(auto h, BlobHeader::decode(std::span(b).first(BlobHeader::kSize), "t"));
    return codec.open(h, std::span(b).subspan(BlobHeader::kSize), (*keys)->chunk_key(), "t");
  };
  auto ok = open(*blob);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(*ok, data);
  for (size_t i = 0; i < blob->size(); ++i) {
    auto copy = *blob;
    copy[i] ^= 0x04;
    // Recompute the plain checksums an attacker can forge, so only the AEAD stands guard.
    if (i >= BlobHeader::kSize) {
      auto h = BlobHeader::decode(std::span(copy).first(BlobHeader::kSize), "t");
      ASSERT_TRUE(h);
      h->data_checksum = XXH3_64bits(copy.data() + BlobHeader::kSize, copy.size() - BlobHeader::kSize);
      auto hb = h->encode();
      std::copy(hb.begin(), hb.end(), copy.begin());
    }
    auto r = open(copy);
    ASSERT_FALSE(r) << "flip at byte " << i << " opened";
  }
  // A plaintext blob slipped into an encrypted repository.
  ChunkCodec plain_codec(3);
  auto plain = plain_codec.seal(id, data);
  auto refused = open(*plain);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("not encrypted, in an encrypted repository (tampered with)"),
            std::string::npos);
}

// seal_view() reuses one buffer from chunk to chunk (the backup's path): a
// large incompressible chunk, then small and compressible ones, then a large
// one again, each opens to its own bytes, none carries another's tail, and
// each is what seal() makes of it, byte for byte in the clear.
TEST_P(SealedBlobTest, ReusedBlobBufferHoldsOnlyTheLastChunk) {
  if (GetParam() == Cipher::kAes256Gcm && preferred_cipher() != Cipher::kAes256Gcm) {
    GTEST_SKIP() << "this CPU has no AES-NI: AES-256-GCM cannot run here";
  }
  auto m = counting_master();
  auto keys = Keys::derive(m->view(), GetParam());
  ASSERT_TRUE(keys);
  std::mt19937_64 rng(21);
  auto chunk = [&](size_t n, bool compressible) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = compressible ? static_cast<uint8_t>(i / 512) : static_cast<uint8_t>(rng());
    return v;
  };
  const std::vector<std::vector<uint8_t>> chunks = {chunk(1 << 20, false), chunk(4096, true), chunk(70000, false),
                                                    chunk(1 << 20, true), chunk(1, false), chunk(1 << 20, false)};
  for (const bool encrypted : {false, true}) {
    SCOPED_TRACE(encrypted ? "encrypted" : "plain");
    ChunkCodec codec(3, encrypted ? *keys : nullptr);
    ChunkCodec reference(3, encrypted ? *keys : nullptr);
    const ChunkKey key = (*keys)->chunk_key();
    for (size_t k = 0; k < chunks.size(); ++k) {
      const ChunkId id = chunk_id(key, chunks[k]);
      auto view = codec.seal_view(id, chunks[k]);
      ASSERT_TRUE(view) << view.error().message();
      const std::vector<uint8_t> blob(view->begin(), view->end());
      auto h = BlobHeader::decode(std::span(blob).first(BlobHeader::kSize), "t");
      ASSERT_TRUE(h) << k;
      ASSERT_EQ(blob.size(), BlobHeader::kSize + h->stored_size) << k;
      auto raw = reference.open(*h, std::span(blob).subspan(BlobHeader::kSize), key, "t");
      ASSERT_TRUE(raw) << k << ": " << raw.error().message();
      EXPECT_EQ(*raw, chunks[k]) << k;
      // Without encryption a blob is a function of the chunk (no nonce).
      if (!encrypted) {
        EXPECT_EQ(blob, *reference.seal(id, chunks[k])) << k;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ciphers, SealedBlobTest, ::testing::Values(Cipher::kXChaCha20Poly1305, Cipher::kAes256Gcm),
                         [](const auto& info) { return info.param == Cipher::kAes256Gcm ? "Aes256Gcm" : "XChaCha20"; });

struct Mode {
  Cipher cipher;
  const char* key_mode;
};

class EncryptedRepoTest : public RepositoryTest, public ::testing::WithParamInterface<Mode> {
 protected:
  void SetUp() override {
    if (GetParam().cipher == Cipher::kAes256Gcm && preferred_cipher() != Cipher::kAes256Gcm) {
      GTEST_SKIP() << "this CPU has no AES-NI: AES-256-GCM cannot run here";
    }
  }
  InitOptions init_options() {
    InitOptions o;
    o.chunk_size = kChunk;
    o.pack_size = 256 << 10;
    o.cipher = GetParam().cipher;
    o.key_mode = GetParam().key_mode;
    o.key_file = key_file_;
    o.passphrase = "s3cret pass";
    o.kdf = kFastKdf;
    o.cache_dir = cache_;
    return o;
  }
  OpenOptions open_options(bool write, std::string pass = "s3cret pass", std::string cache = "") {
    OpenOptions o;
    o.write = write;
    o.key_file = GetParam().key_mode == std::string("keyfile") ? key_file_ : "";
    o.cache_dir = cache.empty() ? cache_ : cache;
    o.passphrase = [pass]() -> Result<std::string> { return pass; };
    return o;
  }
  std::string key_file_ = dir_ / "blkvault.key";
  std::string cache_ = dir_ / "cache";
};

TEST_P(EncryptedRepoTest, RoundTripPrivacyWrongPassphraseAndAnotherMachine) {
  ASSERT_TRUE(init_repository(repo_path(), init_options()));
  std::mt19937_64 rng(77);
  SimDevice a{"/dev/secret-disk-name", std::vector<uint8_t>(10 * kChunk + 33)};
  a.mutate(rng, 10);
  const std::string marker = "TOP-SECRET-PAYLOAD-MARKER";
  std::copy(marker.begin(), marker.end(), a.bytes.begin() + 5);
  a.mark(0, 100);
  std::map<GenerationId, std::vector<uint8_t>> history;
  {
    auto repo = Repository::open(repo_path(), open_options(true));
    ASSERT_TRUE(repo) << repo.error().message();
    EXPECT_EQ((*repo)->config().cipher, GetParam().cipher);
    for (int i = 0; i < 3; ++i) {
      auto g = backup(**repo, {&a}, false);
      ASSERT_TRUE(g) << g.error().message();
      history[g->id] = a.bytes;
      a.mutate(rng, 3);
    }
    for (const auto& [g, bytes] : history) expect_restores(**repo, g, a, bytes);
    auto report = (*repo)->verify(VerifyOptions{.data = true}, nullptr, {});
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->clean());
  }
  // Nothing in the repository names the device or the host or shows the data.
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  for (const auto& e : fs::recursive_directory_iterator(repo_path())) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    const std::string body((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(body.find("secret-disk-name"), std::string::npos) << e.path();
    EXPECT_EQ(body.find(marker), std::string::npos) << e.path();
    if (std::strlen(host) >= 8) {  // a shorter name turns up by chance in random ciphertext
      EXPECT_EQ(body.find(std::string(host)), std::string::npos) << e.path() << " names the host";
    }
    EXPECT_EQ(body.find("testhost"), std::string::npos) << e.path();
  }
  EXPECT_FALSE(fs::exists(repo_path() + "/index.sqlite")) << "the index stays on the host";

  auto wrong = Repository::open(repo_path(), open_options(false, "wrong pass"));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::kKey);
  EXPECT_EQ(wrong.error().message(), "wrong passphrase for repository " + repo_path());
  OpenOptions none = open_options(false);
  none.passphrase = nullptr;
  auto nopass = Repository::open(repo_path(), none);
  ASSERT_FALSE(nopass);
  EXPECT_EQ(nopass.error().code(), ErrorCode::kKey);
  if (GetParam().key_mode == std::string("keyfile")) {
    OpenOptions nokey = open_options(false);
    nokey.key_file.clear();
    auto r = Repository::open(repo_path(), nokey);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kKey);
    EXPECT_NE(r.error().message().find("give it with --key-file"), std::string::npos) << r.error().message();
  }

  // Another machine: a copy of the repository, an empty cache, the passphrase
  // (and, for keyfile, the key file) only.
  const std::string copy = dir_ / "copy";
  fs::copy(repo_path(), copy, fs::copy_options::recursive);
  OpenOptions elsewhere = open_options(false, "s3cret pass", dir_ / "other-cache");
  auto repo = Repository::open(copy, elsewhere);
  ASSERT_TRUE(repo) << repo.error().message();
  auto gens = (*repo)->generations();
  ASSERT_EQ(gens->size(), history.size());
  EXPECT_EQ(gens->front().host, "testhost");
  for (const auto& [g, bytes] : history) {
    auto img = (*repo)->device_image(g, a.name);
    ASSERT_TRUE(img);
    MemSink sink(img->size_bytes);
    ASSERT_TRUE((*repo)->restore(*img, sink, 2, nullptr, {}));
    EXPECT_TRUE(sink.data() == bytes);
  }
}

TEST_P(EncryptedRepoTest, SwappedOrForgedManifestsAreTampering) {
  ASSERT_TRUE(init_repository(repo_path(), init_options()));
  std::mt19937_64 rng(5);
  SimDevice a{"a", std::vector<uint8_t>(4 * kChunk)};
  a.mutate(rng, 5);
  {
    auto repo = Repository::open(repo_path(), open_options(true));
    ASSERT_TRUE(repo);
    ASSERT_TRUE(backup(**repo, {&a}, false));
    a.mutate(rng, 2);
    ASSERT_TRUE(backup(**repo, {&a}, false));
  }
  // Generation 2's manifest replaced by generation 1's (bound to its name).
  fs::copy_file(repo_path() + "/" + manifest_name(1), repo_path() + "/" + manifest_name(2),
                fs::copy_options::overwrite_existing);
  auto repo = Repository::open(repo_path(), open_options(true));
  ASSERT_TRUE(repo);
  auto report = (*repo)->verify(VerifyOptions{}, nullptr, {});
  ASSERT_TRUE(report);
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_NE(report->problems[0].find("fails authentication"), std::string::npos) << report->problems[0];
}

INSTANTIATE_TEST_SUITE_P(Modes, EncryptedRepoTest,
                         ::testing::Values(Mode{Cipher::kXChaCha20Poly1305, "repokey"},
                                           Mode{Cipher::kXChaCha20Poly1305, "keyfile"},
                                           Mode{Cipher::kAes256Gcm, "repokey"}),
                         [](const auto& info) {
                           return std::string(info.param.cipher == Cipher::kAes256Gcm ? "Aes" : "XChaCha") +
                                  (info.param.key_mode == std::string("repokey") ? "Repokey" : "Keyfile");
                         });

}  // namespace
}  // namespace blkvault::repo
