#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "skiff/imagecache/pull_error.h"

namespace skiff::imagecache {

struct UnpackLimits {
  int64_t max_entries = 500000;
  int64_t max_bytes = 64LL * 1024 * 1024 * 1024;
};

struct UnpackStats {
  int64_t entries = 0;
  int64_t bytes = 0;
};

// Where an archive entry may go inside a layer directory: the path made relative and
// normalised, or nullopt when it would leave the directory ("..", or empty).
std::optional<std::string> SafeEntryPath(const std::string& entry_path);

// Unpacks one layer tarball (uncompressed, gzip or zstd: libarchive detects which) into `dest`,
// which must not exist; writes into a temporary sibling and renames it at the end, so a layer
// directory is either complete or absent. OCI whiteouts become overlayfs whiteouts (0/0
// character devices) and opaque-directory markers become the trusted.overlay.opaque xattr.
// Refused: paths leaving the layer, writes through symlinks, hard links to outside, device
// nodes and FIFOs (skipped with a note: runc provides /dev), more entries or bytes than `limits`.
PullResult<UnpackStats> UnpackLayer(const std::string& blob_path, const std::string& dest, const UnpackLimits& limits);

}  // namespace skiff::imagecache
