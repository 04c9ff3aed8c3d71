// repo/crypto.h — encryption at rest (docs/SECURITY.md, docs/FORMAT.md "Encryption").
//
// A repository encrypted at init has a random 64-byte master key. Everything
// else is derived from it with libsodium's crypto_kdf (BLAKE2b), context
// "blkvault":
//   subkey 1        data key     (32 bytes): chunk blobs
//   subkey 2        metadata key (32 bytes): manifests
//   subkeys 3, 4, 5 chunk-id key (3 x 64 bytes = the 192-byte XXH3 secret)
// Blobs and manifests are sealed with an AEAD cipher chosen at init
// (XChaCha20-Poly1305, or AES-256-GCM where the CPU has AES-NI) with a fresh
// random nonce each: sealed = nonce || ciphertext || tag.
//
// The master key is stored only wrapped: Argon2id(passphrase, salt, opslimit,
// memlimit) gives a key that seals the master key with XChaCha20-Poly1305
// (a "key file": JSON, in the repository under keys/ or outside it).
//
// Key material lives in sodium_malloc'd memory (locked, guarded, wiped on free).
// Thread-safety: a Keys is immutable after derive(); seal/open are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "repo/chunk_codec.h"

namespace blkvault::repo {

enum class Cipher : uint8_t { kNone = 0, kXChaCha20Poly1305 = 1, kAes256Gcm = 2 };
std::string_view to_string(Cipher c);  // "none", "xchacha20-poly1305", "aes-256-gcm"
std::optional<Cipher> parse_cipher(std::string_view text);
// AES-256-GCM when the CPU has AES-NI and PCLMUL, else XChaCha20-Poly1305.
Cipher preferred_cipher();

// Initialises libsodium (idempotent, thread-safe). kInternal if it cannot.
Status crypto_init();

inline constexpr size_t kMasterKeyBytes = 64;

// A secret of N bytes in locked, guarded memory, wiped when destroyed.
class Secret {
 public:
  explicit Secret(size_t size);
  ~Secret();
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> view() const { return {data_, size_}; }

 private:
  uint8_t* data_;
  size_t size_;
};

// A fresh random master key.
Result<std::unique_ptr<Secret>> new_master_key();

// AES-256-GCM (12-byte nonce, the 16-byte tag after the ciphertext: exactly
// libsodium's crypto_aead_aes256gcm_encrypt/decrypt, byte for byte) through
// OpenSSL, whose VAES/AVX-512 code runs it 3.3x faster on this machine (4.5
// against 1.35 GB/s), so the bulk cipher costs an encrypted restore a quarter
// of what it did. libsodium keeps everything else: keys (locked, wiped),
// nonces, key derivation and wrapping. Exposed for the cross-check test.
// `out` holds mlen + 16 bytes; false only when OpenSSL fails.
bool aes256gcm_encrypt(uint8_t* out, const uint8_t* m, size_t mlen, const uint8_t* ad, size_t adlen,
                       const uint8_t* nonce, const uint8_t* key);
// `out` holds clen - 16 bytes; false (and `out` zeroed) when the tag does not
// verify: nothing unauthenticated is left behind.
bool aes256gcm_decrypt(uint8_t* out, const uint8_t* c, size_t clen, const uint8_t* ad, size_t adlen,
                       const uint8_t* nonce, const uint8_t* key);

class Keys {
 public:
  static Result<std::shared_ptr<const Keys>> derive(std::span<const uint8_t> master_key, Cipher cipher);
  ~Keys();
  Keys(const Keys&) = delete;
  Keys& operator=(const Keys&) = delete;

  Cipher cipher() const { return cipher_; }
  // BLAKE2b-256 of every derived subkey, hex: a check value for known-answer
  // tests (it reveals nothing about the keys).
  std::string check_value() const;
  const ChunkKey& chunk_key() const { return *chunk_key_; }
  // Bytes sealing adds to a plaintext: nonce + tag.
  size_t overhead() const;

  enum class Use { kData, kMetadata };
  // nonce || ciphertext || tag of `plaintext`, authenticated with `ad`.
  Result<std::vector<uint8_t>> seal(Use use, std::span<const uint8_t> plaintext, std::span<const uint8_t> ad) const;
  // The same, written to `out` (REQUIRES: out.size() >= plaintext.size() +
  // overhead()); returns the bytes written. For the chunk codec, which seals
  // straight into the blob it returns.
  Result<size_t> seal_into(Use use, std::span<const uint8_t> plaintext, std::span<const uint8_t> ad,
                           std::span<uint8_t> out) const;
  // The plaintext, or kCorrupt "… fails authentication" (tampered, damaged, or another key).
  Result<std::vector<uint8_t>> open(Use use, std::span<const uint8_t> sealed, std::span<const uint8_t> ad,
                                    const std::string& what) const;
  // The same into `out` (resized; its capacity is reused).
  Status open_into(Use use, std::span<const uint8_t> sealed, std::span<const uint8_t> ad, const std::string& what,
                   std::vector<uint8_t>& out) const;

 private:
  Keys() = default;
  Cipher cipher_ = Cipher::kNone;
  std::unique_ptr<Secret> data_key_, metadata_key_;
  ChunkKey* chunk_key_ = nullptr;  // inside chunk_secret_
  std::unique_ptr<Secret> chunk_secret_;
};

// --- Key files -------------------------------------------------------------

struct KdfParams {
  uint64_t opslimit = 3;          // Argon2id passes
  uint64_t memlimit = 64 << 20;   // bytes
};

// A key file's contents (JSON): {"blkvault_key": 1, "id", "created", "kdf":
// {"algorithm": "argon2id13", "opslimit", "memlimit", "salt"}, "nonce",
// "wrapped"} — the master key sealed with a key derived from the passphrase.
Result<std::string> wrap_master_key(const Secret& master, std::string_view passphrase, const KdfParams& kdf,
                                    const std::string& id, const std::string& created);
// The master key, or kKey "wrong passphrase" when the passphrase does not open
// it; kCorrupt when the file is not a key file.
Result<std::unique_ptr<Secret>> unwrap_master_key(std::string_view key_file_text, std::string_view passphrase,
                                                  const std::string& where);

// A paper backup of the master key: repository id, the key as 8 groups of
// 16 hex digits per line, and a checksum line. parse_paper_key is its inverse
// (kInvalidArgument naming what is wrong, e.g. a typo caught by the checksum).
std::string paper_key(const Secret& master, const std::string& repository_id);
Result<std::unique_ptr<Secret>> parse_paper_key(std::string_view text, const std::string& repository_id);

}  // namespace blkvault::repo
