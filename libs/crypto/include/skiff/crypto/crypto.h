#pragma once

#include <optional>
#include <string>
#include <string_view>

// Thin, tested wrappers over OpenSSL used by every service that handles secrets or ids.
namespace skiff::crypto {

std::string RandomBytes(size_t count);
// RFC 4122 version 4 UUID, lower-case.
std::string NewUuid();
// The same UUID for the same name (RFC 9562 version 8, from SHA-256): ids that a retry recomputes.
std::string NameUuid(std::string_view name);
bool IsUuid(std::string_view text);
std::string Sha256Hex(std::string_view data);
// Compares secrets (keys, hashes of keys) in time that does not depend on where they differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);
std::string Base64Encode(std::string_view data);
std::optional<std::string> Base64Decode(std::string_view text);

// Incremental SHA-256, for digests of streams too large to hold in memory.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t size);
  // "sha256:<64 hex>"; the object can no longer be updated afterwards.
  std::string FinishDigest();

 private:
  void* ctx_;
};

// API tokens: "skf_" + 32 random bytes in url-safe base64. They carry 256 bits of entropy, so
// an unsalted SHA-256 is what is stored (as GitHub does for its tokens); a slow password hash
// would only make every request slower.
std::string NewApiToken();
std::string HashApiToken(std::string_view token);

// Authenticated encryption of small secrets (secureValue, registry passwords, secret volumes)
// with AES-256-GCM. Sealed form: "enc:v1:" + base64(12-byte nonce | ciphertext | 16-byte tag),
// so a sealed value can be told apart from a plain one and the format can evolve.
class SecretBox {
 public:
  // key: 32 raw bytes. Throws std::invalid_argument otherwise.
  explicit SecretBox(std::string key);
  // key: base64 of 32 bytes, as kept in config. Throws std::invalid_argument otherwise.
  static SecretBox FromBase64Key(std::string_view key_base64);

  std::string Seal(std::string_view plaintext) const;
  // nullopt when the value was not sealed by this key or was tampered with.
  std::optional<std::string> Open(std::string_view sealed) const;
  static bool IsSealed(std::string_view value);

 private:
  std::string key_;
};

}  // namespace skiff::crypto
