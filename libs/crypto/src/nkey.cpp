#include "skiff/crypto/nkey.h"

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "skiff/crypto/crypto.h"

namespace skiff::crypto {
namespace {

constexpr uint8_t kPrefixSeed = 18 << 3;  // 'S'
constexpr uint8_t kPrefixUser = 20 << 3;  // 'U'
constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

uint16_t Crc16(std::string_view data) {  // CRC-16/XMODEM: polynomial 0x1021, initial 0
  uint16_t crc = 0;
  for (unsigned char byte : data) {
    crc ^= static_cast<uint16_t>(byte) << 8;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
  }
  return crc;
}

std::string Base32(std::string_view data) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char byte : data) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += kAlphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kAlphabet[(buffer << (5 - bits)) & 31];
  return out;
}

std::optional<std::string> Unbase32(std::string_view text) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    size_t value = kAlphabet.find(c);
    if (value == std::string_view::npos) return std::nullopt;
    buffer = (buffer << 5) | static_cast<uint32_t>(value);
    bits += 5;
    if (bits >= 8) {
      out += static_cast<char>((buffer >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return out;
}

std::string WithChecksum(std::string raw) {
  const uint16_t crc = Crc16(raw);
  raw += static_cast<char>(crc & 0xff);
  raw += static_cast<char>(crc >> 8);
  return Base32(raw);
}

// The payload of an encoded key after its checksum checks out.
std::optional<std::string> Checked(std::string_view encoded) {
  auto raw = Unbase32(encoded);
  if (!raw || raw->size() < 3) return std::nullopt;
  const std::string_view body(raw->data(), raw->size() - 2);
  const uint16_t crc = static_cast<uint16_t>(static_cast<unsigned char>((*raw)[raw->size() - 2]) |
                                             (static_cast<unsigned char>((*raw)[raw->size() - 1]) << 8));
  if (Crc16(body) != crc) return std::nullopt;
  return std::string(body);
}

using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

// The 32 raw Ed25519 seed bytes of a user seed.
std::optional<std::string> UserSeedBytes(std::string_view seed) {
  auto body = Checked(seed);
  if (!body || body->size() != 34) return std::nullopt;
  const auto b0 = static_cast<uint8_t>((*body)[0]);
  const auto b1 = static_cast<uint8_t>((*body)[1]);
  if ((b0 & 0xf8) != kPrefixSeed) return std::nullopt;
  const uint8_t kind = static_cast<uint8_t>(((b0 & 7) << 5) | ((b1 & 0xf8) >> 3));
  if (kind != kPrefixUser) return std::nullopt;
  return body->substr(2);
}

Pkey PrivateKey(const std::string& seed_bytes) {
  return Pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                           reinterpret_cast<const unsigned char*>(seed_bytes.data()), seed_bytes.size()),
              &EVP_PKEY_free);
}

std::string EncodeUserPublic(const Pkey& key) {
  std::string raw(32, '\0');
  size_t size = raw.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), reinterpret_cast<unsigned char*>(raw.data()), &size) != 1 || size != 32) {
    throw std::runtime_error("Ed25519 public key");
  }
  return WithChecksum(std::string(1, static_cast<char>(kPrefixUser)) + raw);
}

}  // namespace

NkeyPair NewUserNkey() {
  const std::string seed_bytes = RandomBytes(32);
  Pkey key = PrivateKey(seed_bytes);
  if (!key) throw std::runtime_error("Ed25519 key");
  std::string raw;
  raw += static_cast<char>(kPrefixSeed | (kPrefixUser >> 5));
  raw += static_cast<char>((kPrefixUser & 31) << 3);
  raw += seed_bytes;
  return {WithChecksum(raw), EncodeUserPublic(key)};
}

std::optional<std::string> UserNkeyPublicKey(std::string_view seed) {
  auto bytes = UserSeedBytes(seed);
  if (!bytes) return std::nullopt;
  Pkey key = PrivateKey(*bytes);
  if (!key) return std::nullopt;
  return EncodeUserPublic(key);
}

std::optional<std::string> NkeySign(std::string_view seed, std::string_view data) {
  auto bytes = UserSeedBytes(seed);
  if (!bytes) return std::nullopt;
  Pkey key = PrivateKey(*bytes);
  if (!key) return std::nullopt;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  std::string signature(64, '\0');
  size_t size = signature.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    return std::nullopt;
  }
  signature.resize(size);
  return signature;
}

bool NkeyVerify(std::string_view public_key, std::string_view data, std::string_view signature) {
  auto body = Checked(public_key);
  if (!body || body->size() != 33 || static_cast<uint8_t>((*body)[0]) != kPrefixUser) return false;
  Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(body->data() + 1), 32),
           &EVP_PKEY_free);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  return key && ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

}  // namespace skiff::crypto
