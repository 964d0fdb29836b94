#include "skiff/crypto/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <memory>
#include <stdexcept>

namespace skiff::crypto {
namespace {

constexpr std::string_view kSealPrefix = "enc:v2:";
constexpr std::string_view kLegacyPrefix = "enc:v1:";  // unbound, before key ids
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;

using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

CipherContext NewCipherContext() {
  CipherContext ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  if (!ctx) throw std::runtime_error("EVP_CIPHER_CTX_new failed");
  return ctx;
}

const unsigned char* Bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* Bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

}  // namespace

std::string RandomBytes(size_t count) {
  std::string out(count, '\0');
  if (RAND_bytes(Bytes(out), static_cast<int>(count)) != 1) throw std::runtime_error("RAND_bytes failed");
  return out;
}

namespace {

std::string FormatUuid(std::string raw, unsigned char version) {
  raw[6] = static_cast<char>((raw[6] & 0x0f) | (version << 4));
  raw[8] = static_cast<char>((raw[8] & 0x3f) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[(static_cast<unsigned char>(raw[i]) >> 4) & 0xf];
    out += kHex[static_cast<unsigned char>(raw[i]) & 0xf];
  }
  return out;
}

}  // namespace

std::string NewUuid() { return FormatUuid(RandomBytes(16), 4); }

std::string NameUuid(std::string_view name) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(name.data()), name.size(), digest);
  return FormatUuid(std::string(reinterpret_cast<const char*>(digest), 16), 8);
}

bool IsUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(Bytes(data), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * SHA256_DIGEST_LENGTH);
  for (unsigned char b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_DigestInit failed");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::Update(const void* data, size_t size) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, size);
}

std::string Sha256::FinishDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int written = EVP_EncodeBlock(Bytes(out), Bytes(data), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(written));
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * text.size() / 4 + 1, '\0');
  int written = EVP_DecodeBlock(Bytes(out), Bytes(text), static_cast<int>(text.size()));
  if (written < 0) return std::nullopt;
  // EVP_DecodeBlock counts padding as zero bytes; drop them.
  size_t padding = 0;
  if (!text.empty() && text.back() == '=') ++padding;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++padding;
  out.resize(static_cast<size_t>(written) - padding);
  return out;
}

std::string NewApiToken() {
  std::string token = Base64Encode(RandomBytes(32));
  for (char& c : token) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!token.empty() && token.back() == '=') token.pop_back();
  return "skf_" + token;
}

std::string HashApiToken(std::string_view token) { return Sha256Hex(token); }

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string SecretContext(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) {
    out += std::to_string(part.size());
    out += ':';
    out += part;
  }
  return out;
}

std::string SecretBox::KeyId(std::string_view key) {
  return Sha256Hex(std::string("skiff-secret-key-id:") + std::string(key)).substr(0, 8);
}

SecretBox::SecretBox(std::string key) {
  if (key.size() != 32) throw std::invalid_argument("secret key must be 32 bytes (AES-256)");
  keys_.push_back({KeyId(key), std::move(key)});
}

SecretBox SecretBox::FromBase64Key(std::string_view key_base64) {
  auto key = Base64Decode(key_base64);
  if (!key || key->size() != 32) throw std::invalid_argument("secret key must be base64 of 32 bytes");
  return SecretBox(std::move(*key));
}

SecretBox SecretBox::FromBase64Keys(std::string_view current_base64, std::string_view older_base64) {
  SecretBox box = FromBase64Key(current_base64);
  while (!older_base64.empty()) {
    size_t comma = older_base64.find(',');
    std::string_view item = older_base64.substr(0, comma);
    older_base64 = comma == std::string_view::npos ? std::string_view() : older_base64.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    auto key = Base64Decode(item);
    if (!key || key->size() != 32) throw std::invalid_argument("old secret keys must each be base64 of 32 bytes");
    std::string id = KeyId(*key);
    bool known = false;
    for (const auto& k : box.keys_) known = known || k.id == id;
    if (!known) box.keys_.push_back({std::move(id), std::move(*key)});
  }
  return box;
}

bool SecretBox::IsSealed(std::string_view value) {
  return value.substr(0, kSealPrefix.size()) == kSealPrefix || value.substr(0, kLegacyPrefix.size()) == kLegacyPrefix;
}

std::string SecretBox::KeyIdOf(std::string_view sealed) {
  if (sealed.substr(0, kSealPrefix.size()) != kSealPrefix) return "";
  std::string_view rest = sealed.substr(kSealPrefix.size());
  size_t colon = rest.find(':');
  return colon == std::string_view::npos ? "" : std::string(rest.substr(0, colon));
}

bool SecretBox::NeedsReseal(std::string_view sealed) const {
  return IsSealed(sealed) && KeyIdOf(sealed) != current_key_id();
}

namespace {

std::string AssociatedData(std::string_view context) { return "skiff-secret-v2:" + std::string(context); }

std::optional<std::string> OpenWith(const std::string& key, std::string_view payload_base64, std::string_view aad,
                                    bool use_aad) {
  auto raw = Base64Decode(payload_base64);
  if (!raw || raw->size() < kNonceSize + kTagSize) return std::nullopt;
  std::string_view all(*raw);
  std::string_view nonce = all.substr(0, kNonceSize);
  std::string_view ciphertext = all.substr(kNonceSize, all.size() - kNonceSize - kTagSize);
  std::string tag(all.substr(all.size() - kTagSize));
  std::string plaintext(ciphertext.size(), '\0');
  CipherContext ctx = NewCipherContext();
  int len = 0;
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key), Bytes(nonce)) != 1 ||
      (use_aad && EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), Bytes(plaintext), &len, Bytes(ciphertext), static_cast<int>(ciphertext.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), Bytes(plaintext) + len, &len) != 1) {
    return std::nullopt;
  }
  return plaintext;
}

}  // namespace

std::string SecretBox::Seal(std::string_view plaintext, std::string_view context) const {
  const Key& key = keys_.front();
  const std::string aad = AssociatedData(context);
  std::string nonce = RandomBytes(kNonceSize);
  std::string ciphertext(plaintext.size(), '\0');
  std::string tag(kTagSize, '\0');
  CipherContext ctx = NewCipherContext();
  int len = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key.bytes), Bytes(nonce)) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), Bytes(ciphertext), &len, Bytes(plaintext), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), Bytes(ciphertext) + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize, tag.data()) != 1) {
    throw std::runtime_error("AES-GCM encryption failed");
  }
  return std::string(kSealPrefix) + key.id + ":" + Base64Encode(nonce + ciphertext + tag);
}

std::optional<std::string> SecretBox::Open(std::string_view sealed, std::string_view context) const {
  if (sealed.substr(0, kLegacyPrefix.size()) == kLegacyPrefix) {
    for (const auto& key : keys_) {
      if (auto opened = OpenWith(key.bytes, sealed.substr(kLegacyPrefix.size()), "", false)) return opened;
    }
    return std::nullopt;
  }
  const std::string id = KeyIdOf(sealed);
  if (id.empty()) return std::nullopt;
  for (const auto& key : keys_) {
    if (key.id == id) {
      return OpenWith(key.bytes, sealed.substr(kSealPrefix.size() + id.size() + 1), AssociatedData(context), true);
    }
  }
  return std::nullopt;
}

}  // namespace skiff::crypto
