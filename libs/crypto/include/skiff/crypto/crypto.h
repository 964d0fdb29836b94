#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// Where a sealed value belongs, as associated data: e.g. {subscription, group id, "env",
// container, variable}. Each part is length-prefixed, so no choice of names makes two different
// places read alike.
std::string SecretContext(std::initializer_list<std::string_view> parts);

// Authenticated encryption of small secrets (secureValue, registry passwords, secret volumes)
// with AES-256-GCM, bound to where they belong. Sealed form:
//   "enc:v2:" + key id (8 hex digits) + ":" + base64(12-byte nonce | ciphertext | 16-byte tag)
// with the context (SecretContext) as associated data, so a ciphertext copied to another group,
// subscription or field does not open. A box holds the current key (it seals) and older keys
// that still open (rotation). "enc:v1:" values (no key id, no context) from before binding still
// open; `skiff-gateway reseal-secrets` rewrites them.
class SecretBox {
 public:
  // key: 32 raw bytes. Throws std::invalid_argument otherwise.
  explicit SecretBox(std::string key);
  // key: base64 of 32 bytes, as kept in config. Throws std::invalid_argument otherwise.
  static SecretBox FromBase64Key(std::string_view key_base64);
  // The current key plus older ones (comma-separated base64), which open but never seal.
  static SecretBox FromBase64Keys(std::string_view current_base64, std::string_view older_base64);

  std::string Seal(std::string_view plaintext, std::string_view context) const;
  // nullopt when the value was not sealed by one of these keys for this context, or was
  // tampered with.
  std::optional<std::string> Open(std::string_view sealed, std::string_view context) const;
  static bool IsSealed(std::string_view value);
  // The id of the key that sealed `sealed` ("" for the unbound v1 form or a plain value).
  static std::string KeyIdOf(std::string_view sealed);
  // Sealed in the v1 form or under a key other than the current one.
  bool NeedsReseal(std::string_view sealed) const;
  const std::string& current_key_id() const { return keys_.front().id; }
  // The id a key is known by: the first 8 hex digits of a hash of it (not secret).
  static std::string KeyId(std::string_view key);

 private:
  struct Key {
    std::string id;
    std::string bytes;
  };
  std::vector<Key> keys_;  // front() seals
};

}  // namespace skiff::crypto
