#pragma once

#include <optional>
#include <string>
#include <string_view>

// NATS nkeys (Ed25519 keys in NATS's encoding), so each service can authenticate to
// nats-server with a key of its own. Encoding, as nats-io/nkeys: base32 (RFC 4648, no padding)
// of prefix byte(s) | 32 key bytes | CRC-16/XMODEM (little-endian).
namespace skiff::crypto {

struct NkeyPair {
  std::string seed;        // "SU…": the secret; what a client's seed file holds
  std::string public_key;  // "U…": what nats-server's authorization block names
};

// A new user key pair.
NkeyPair NewUserNkey();
// The public key of a user seed; nullopt when `seed` is not a valid user seed.
std::optional<std::string> UserNkeyPublicKey(std::string_view seed);
// Raw Ed25519 signature of `data` by the seed's key (what nats-server checks at CONNECT).
std::optional<std::string> NkeySign(std::string_view seed, std::string_view data);
// Checks an Ed25519 signature against a public user key.
bool NkeyVerify(std::string_view public_key, std::string_view data, std::string_view signature);

}  // namespace skiff::crypto
