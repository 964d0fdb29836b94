#pragma once

#include <string>
#include <variant>

namespace skiff::imagecache {

// Why a pull failed, in words a user can act on. `code` is stable (used in events and replies):
// ImageNotFound, RegistryUnauthorized, RegistryUnavailable, RegistryThrottled, DigestMismatch,
// UnsafeLayer, UnsupportedManifest, NoMatchingPlatform, ImageTooLarge, InvalidImageReference,
// InsecureRegistryRefused, CacheIoError.
struct PullError {
  std::string code;
  std::string message;
};

template <typename T>
using PullResult = std::variant<T, PullError>;

template <typename T>
const PullError* ErrorOf(const PullResult<T>& result) {
  return std::get_if<PullError>(&result);
}

}  // namespace skiff::imagecache
