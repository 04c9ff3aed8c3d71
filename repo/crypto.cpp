#include "repo/crypto.h"
#include "repo/json_fields.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "common/file_io.h"

namespace blkvault::repo {
namespace {

constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES] = {'b', 'l', 'k', 'v', 'a', 'u', 'l', 't'};
constexpr std::string_view kWrapAd = "blkvault key v1";

size_t nonce_bytes(Cipher c) {
  return c == Cipher::kAes256Gcm ? crypto_aead_aes256gcm_NPUBBYTES : crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
}

constexpr size_t kGcmTagBytes = 16;
static_assert(crypto_aead_aes256gcm_ABYTES == kGcmTagBytes && crypto_aead_aes256gcm_NPUBBYTES == 12 &&
              crypto_aead_aes256gcm_KEYBYTES == 32);

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }  // cleanses the key schedule
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

}  // namespace

bool aes256gcm_encrypt(uint8_t* out, const uint8_t* m, size_t mlen, const uint8_t* ad, size_t adlen,
                       const uint8_t* nonce, const uint8_t* key) {
  if (mlen > INT_MAX || adlen > INT_MAX) return false;
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  return ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key, nonce) == 1 &&
         (adlen == 0 || EVP_EncryptUpdate(ctx.get(), nullptr, &n, ad, static_cast<int>(adlen)) == 1) &&
         (mlen == 0 || EVP_EncryptUpdate(ctx.get(), out, &n, m, static_cast<int>(mlen)) == 1) &&
         EVP_EncryptFinal_ex(ctx.get(), out + mlen, &n) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagBytes, out + mlen) == 1;
}

bool aes256gcm_decrypt(uint8_t* out, const uint8_t* c, size_t clen, const uint8_t* ad, size_t adlen,
                       const uint8_t* nonce, const uint8_t* key) {
  if (clen < kGcmTagBytes || clen > INT_MAX || adlen > INT_MAX) return false;
  const size_t mlen = clen - kGcmTagBytes;
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  uint8_t tag[kGcmTagBytes];
  std::memcpy(tag, c + mlen, kGcmTagBytes);
  const bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key, nonce) == 1 &&
                  (adlen == 0 || EVP_DecryptUpdate(ctx.get(), nullptr, &n, ad, static_cast<int>(adlen)) == 1) &&
                  (mlen == 0 || EVP_DecryptUpdate(ctx.get(), out, &n, c, static_cast<int>(mlen)) == 1) &&
                  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagBytes, tag) == 1 &&
                  EVP_DecryptFinal_ex(ctx.get(), out + mlen, &n) == 1;
  if (!ok && mlen > 0) sodium_memzero(out, mlen);
  return ok;
}

std::string_view to_string(Cipher c) {
  switch (c) {
    case Cipher::kNone: return "none";
    case Cipher::kXChaCha20Poly1305: return "xchacha20-poly1305";
    case Cipher::kAes256Gcm: return "aes-256-gcm";
  }
  return "unknown";
}

std::optional<Cipher> parse_cipher(std::string_view text) {
  for (auto c : {Cipher::kNone, Cipher::kXChaCha20Poly1305, Cipher::kAes256Gcm}) {
    if (text == to_string(c)) return c;
  }
  return std::nullopt;
}

Status crypto_init() {
  static std::once_flag once;
  static int rc = 0;
  std::call_once(once, [] { rc = sodium_init(); });
  if (rc < 0) return fail(ErrorCode::kInternal, "libsodium failed to initialise");
  return {};
}

Cipher preferred_cipher() {
  if (!crypto_init()) return Cipher::kXChaCha20Poly1305;
  return crypto_aead_aes256gcm_is_available() ? Cipher::kAes256Gcm : Cipher::kXChaCha20Poly1305;
}

// sodium_malloc needs libsodium initialised (it aborts otherwise).
static uint8_t* secure_alloc(size_t size) {
  (void)crypto_init();
  return static_cast<uint8_t*>(sodium_malloc(size));
}

Secret::Secret(size_t size) : data_(secure_alloc(size)), size_(size) {
  if (data_ == nullptr) throw std::bad_alloc();
  sodium_memzero(data_, size_);
}

Secret::~Secret() { sodium_free(data_); }  // wipes and unlocks

Result<std::unique_ptr<Secret>> new_master_key() {
  BLKVAULT_TRY(crypto_init());
  auto k = std::make_unique<Secret>(kMasterKeyBytes);
  randombytes_buf(k->data(), k->size());
  return k;
}

Keys::~Keys() = default;

Result<std::shared_ptr<const Keys>> Keys::derive(std::span<const uint8_t> master, Cipher cipher) {
  BLKVAULT_TRY(crypto_init());
  if (master.size() != kMasterKeyBytes) return fail(ErrorCode::kInternal, "master key of the wrong size");
  if (cipher == Cipher::kAes256Gcm && !crypto_aead_aes256gcm_is_available()) {
    return fail(ErrorCode::kUnsupported,
                "the repository is encrypted with AES-256-GCM, which this CPU cannot run (no AES-NI)");
  }
  std::shared_ptr<Keys> k(new Keys());
  k->cipher_ = cipher;
  k->data_key_ = std::make_unique<Secret>(32);
  k->metadata_key_ = std::make_unique<Secret>(32);
  k->chunk_secret_ = std::make_unique<Secret>(sizeof(ChunkKey));
  static_assert(sizeof(ChunkKey) == 3 * 64);
  const uint8_t* mk = master.data();
  // crypto_kdf takes a 32-byte key: the master key's first half keys the
  // derivation, its second half is hashed in as the salt of a BLAKE2b step.
  Secret kdf_key(crypto_kdf_KEYBYTES);
  crypto_generichash(kdf_key.data(), kdf_key.size(), mk + 32, 32, mk, 32);
  if (crypto_kdf_derive_from_key(k->data_key_->data(), 32, 1, kKdfContext, kdf_key.data()) != 0 ||
      crypto_kdf_derive_from_key(k->metadata_key_->data(), 32, 2, kKdfContext, kdf_key.data()) != 0) {
    return fail(ErrorCode::kInternal, "key derivation failed");
  }
  for (int i = 0; i < 3; ++i) {
    if (crypto_kdf_derive_from_key(k->chunk_secret_->data() + 64 * i, 64, static_cast<uint64_t>(3 + i), kKdfContext,
                                   kdf_key.data()) != 0) {
      return fail(ErrorCode::kInternal, "key derivation failed");
    }
  }
  k->chunk_key_ = reinterpret_cast<ChunkKey*>(k->chunk_secret_->data());
  return std::shared_ptr<const Keys>(std::move(k));
}

std::string Keys::check_value() const {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 32);
  crypto_generichash_update(&st, data_key_->data(), data_key_->size());
  crypto_generichash_update(&st, metadata_key_->data(), metadata_key_->size());
  crypto_generichash_update(&st, chunk_secret_->data(), chunk_secret_->size());
  std::array<uint8_t, 32> out;
  crypto_generichash_final(&st, out.data(), out.size());
  return blkvault::to_hex(std::span<const uint8_t>(out));
}

size_t Keys::overhead() const {
  return nonce_bytes(cipher_) +
         (cipher_ == Cipher::kAes256Gcm ? crypto_aead_aes256gcm_ABYTES : crypto_aead_xchacha20poly1305_ietf_ABYTES);
}

Result<std::vector<uint8_t>> Keys::seal(Use use, std::span<const uint8_t> plaintext,
                                        std::span<const uint8_t> ad) const {
  std::vector<uint8_t> out(plaintext.size() + overhead());
  BLKVAULT_TRY_ASSIGN(size_t n, seal_into(use, plaintext, ad, out));
  out.resize(n);
  return out;
}

Result<size_t> Keys::seal_into(Use use, std::span<const uint8_t> plaintext, std::span<const uint8_t> ad,
                               std::span<uint8_t> out) const {
  const uint8_t* key = (use == Use::kData ? data_key_ : metadata_key_)->data();
  const size_t nb = nonce_bytes(cipher_);
  if (out.size() < plaintext.size() + overhead()) return fail(ErrorCode::kInternal, "seal_into: output too small");
  randombytes_buf(out.data(), nb);
  unsigned long long clen = 0;
  int rc;
  if (cipher_ == Cipher::kAes256Gcm) {
    rc = aes256gcm_encrypt(out.data() + nb, plaintext.data(), plaintext.size(), ad.data(), ad.size(), out.data(), key)
             ? 0
             : -1;
    clen = plaintext.size() + kGcmTagBytes;
  } else {
    rc = crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + nb, &clen, plaintext.data(), plaintext.size(),
                                                    ad.data(), ad.size(), nullptr, out.data(), key);
  }
  if (rc != 0) return fail(ErrorCode::kInternal, "encryption failed");
  return nb + clen;
}

Result<std::vector<uint8_t>> Keys::open(Use use, std::span<const uint8_t> sealed, std::span<const uint8_t> ad,
                                        const std::string& what) const {
  std::vector<uint8_t> out;
  BLKVAULT_TRY(open_into(use, sealed, ad, what, out));
  return out;
}

Status Keys::open_into(Use use, std::span<const uint8_t> sealed, std::span<const uint8_t> ad, const std::string& what,
                       std::vector<uint8_t>& out) const {
  const uint8_t* key = (use == Use::kData ? data_key_ : metadata_key_)->data();
  const size_t nb = nonce_bytes(cipher_);
  if (sealed.size() < overhead()) return fail(ErrorCode::kCorrupt, what + ": encrypted data truncated");
  out.resize(sealed.size() - overhead());
  unsigned long long mlen = 0;
  int rc;
  if (cipher_ == Cipher::kAes256Gcm) {
    rc = aes256gcm_decrypt(out.data(), sealed.data() + nb, sealed.size() - nb, ad.data(), ad.size(), sealed.data(), key)
             ? 0
             : -1;
    mlen = sealed.size() - nb - kGcmTagBytes;
  } else {
    rc = crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), &mlen, nullptr, sealed.data() + nb,
                                                    sealed.size() - nb, ad.data(), ad.size(), sealed.data(), key);
  }
  if (rc != 0) {
    return fail(ErrorCode::kCorrupt, what + ": fails authentication (tampered with, damaged, or sealed with another key)");
  }
  out.resize(mlen);
  return {};
}

// --- key files ---------------------------------------------------------------

Result<std::string> wrap_master_key(const Secret& master, std::string_view passphrase, const KdfParams& kdf,
                                    const std::string& id, const std::string& created) {
  BLKVAULT_TRY(crypto_init());
  if (kdf.memlimit < crypto_pwhash_MEMLIMIT_MIN || kdf.opslimit < crypto_pwhash_OPSLIMIT_MIN) {
    return fail(ErrorCode::kInvalidArgument, "Argon2id parameters below libsodium's minimum");
  }
  std::array<uint8_t, crypto_pwhash_SALTBYTES> salt;
  randombytes_buf(salt.data(), salt.size());
  Secret wrap_key(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  if (crypto_pwhash(wrap_key.data(), wrap_key.size(), passphrase.data(), passphrase.size(), salt.data(),
                    kdf.opslimit, kdf.memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return fail(ErrorCode::kNoSpace, "Argon2id ran out of memory (memlimit " + std::to_string(kdf.memlimit) + ")");
  }
  std::array<uint8_t, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES> nonce;
  randombytes_buf(nonce.data(), nonce.size());
  std::vector<uint8_t> wrapped(master.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped.data(), &clen, master.data(), master.size(),
                                             reinterpret_cast<const uint8_t*>(kWrapAd.data()), kWrapAd.size(),
                                             nullptr, nonce.data(), wrap_key.data());
  nlohmann::json j = {{"blkvault_key", 1},
                      {"id", id},
                      {"created", created},
                      {"kdf",
                       {{"algorithm", "argon2id13"},
                        {"opslimit", kdf.opslimit},
                        {"memlimit", kdf.memlimit},
                        {"salt", blkvault::to_hex(std::span<const uint8_t>(salt))}}},
                      {"nonce", blkvault::to_hex(std::span<const uint8_t>(nonce))},
                      {"wrapped", blkvault::to_hex(std::span<const uint8_t>(wrapped))}};
  return j.dump(2) + "\n";
}

Result<std::unique_ptr<Secret>> unwrap_master_key(std::string_view text, std::string_view passphrase,
                                                  const std::string& where) {
  BLKVAULT_TRY(crypto_init());
  std::array<uint8_t, crypto_pwhash_SALTBYTES> salt;
  std::array<uint8_t, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES> nonce;
  std::vector<uint8_t> wrapped(kMasterKeyBytes + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  KdfParams kdf;
  try {
    const auto j = nlohmann::json::parse(text);
    if (integer_field<int>(j, "blkvault_key") != 1) throw std::runtime_error("unknown key file version");
    if (j.at("kdf").at("algorithm").get<std::string>() != "argon2id13") throw std::runtime_error("unknown kdf");
    kdf.opslimit = integer_field<uint64_t>(j.at("kdf"), "opslimit");
    kdf.memlimit = integer_field<uint64_t>(j.at("kdf"), "memlimit");
    if (!from_hex(j.at("kdf").at("salt").get<std::string>(), salt) ||
        !from_hex(j.at("nonce").get<std::string>(), nonce) || !from_hex(j.at("wrapped").get<std::string>(), wrapped)) {
      throw std::runtime_error("bad hex field");
    }
    if (kdf.memlimit > (4ull << 30) || kdf.opslimit > 64) throw std::runtime_error("kdf parameters out of range");
  } catch (const std::exception& e) {
    return fail(ErrorCode::kCorrupt, where + " is not a blkvault key file: " + e.what());
  }
  Secret wrap_key(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  if (crypto_pwhash(wrap_key.data(), wrap_key.size(), passphrase.data(), passphrase.size(), salt.data(),
                    kdf.opslimit, static_cast<size_t>(kdf.memlimit), crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return fail(ErrorCode::kNoSpace, where + ": Argon2id ran out of memory");
  }
  auto master = std::make_unique<Secret>(kMasterKeyBytes);
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(master->data(), &mlen, nullptr, wrapped.data(), wrapped.size(),
                                                 reinterpret_cast<const uint8_t*>(kWrapAd.data()), kWrapAd.size(),
                                                 nonce.data(), wrap_key.data()) != 0 ||
      mlen != kMasterKeyBytes) {
    return fail(ErrorCode::kKey, "wrong passphrase");
  }
  return master;
}

std::string paper_key(const Secret& master, const std::string& repository_id) {
  const std::string hex = blkvault::to_hex(master.view());
  std::string out = "blkvault master key of repository " + repository_id + "\n";
  for (size_t i = 0; i < hex.size(); i += 16) {
    out += hex.substr(i, 16);
    out += (i / 16) % 4 == 3 ? "\n" : " ";
  }
  char sum[32];
  std::snprintf(sum, sizeof sum, "%08x", static_cast<uint32_t>(XXH3_64bits(master.data(), master.size())));
  out += std::string("checksum ") + sum + "\n";
  return out;
}

Result<std::unique_ptr<Secret>> parse_paper_key(std::string_view text, const std::string& repository_id) {
  std::string hex, checksum, repo;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    std::string_view line = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    pos = end == std::string_view::npos ? text.size() : end + 1;
    constexpr std::string_view kHead = "blkvault master key of repository ";
    constexpr std::string_view kSum = "checksum ";
    if (line.substr(0, kHead.size()) == kHead) {
      repo = std::string(line.substr(kHead.size()));
    } else if (line.substr(0, kSum.size()) == kSum) {
      checksum = std::string(line.substr(kSum.size()));
    } else {
      for (char c : line) {
        if (std::isxdigit(static_cast<unsigned char>(c))) hex += static_cast<char>(std::tolower(c));
      }
    }
  }
  while (!repo.empty() && std::isspace(static_cast<unsigned char>(repo.back()))) repo.pop_back();
  if (!repo.empty() && repo != repository_id) {
    return fail(ErrorCode::kInvalidArgument, "this paper key is for repository " + repo + ", not " + repository_id);
  }
  auto master = std::make_unique<Secret>(kMasterKeyBytes);
  if (hex.size() != 2 * kMasterKeyBytes || !from_hex(hex, std::span<uint8_t>(master->data(), master->size()))) {
    return fail(ErrorCode::kInvalidArgument, "the paper key has " + std::to_string(hex.size()) +
                                                 " hex digits, expected " + std::to_string(2 * kMasterKeyBytes));
  }
  char sum[32];
  std::snprintf(sum, sizeof sum, "%08x", static_cast<uint32_t>(XXH3_64bits(master->data(), master->size())));
  if (checksum.empty() || checksum.substr(0, 8) != sum) {
    return fail(ErrorCode::kInvalidArgument, "the paper key's checksum does not match (a typo in the digits?)");
  }
  return master;
}

}  // namespace blkvault::repo
