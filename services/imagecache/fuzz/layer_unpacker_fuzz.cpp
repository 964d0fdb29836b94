// libFuzzer: a hostile layer blob (tar, gzip or zstd, as a registry could serve it) unpacked
// into a fresh directory. Besides crashes, the unpacker may never touch anything outside the
// layer: a sentinel beside it must survive every input.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "skiff/imagecache/layer_unpacker.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fs::path base = fs::temp_directory_path() / ("skiff-unpack-fuzz-" + std::to_string(::getpid()));
  fs::create_directories(base);
  const fs::path blob = base / "blob", dest = base / "layer", sentinel = base / "sentinel";
  std::ofstream(sentinel) << "keep";
  std::ofstream(blob, std::ios::binary).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  skiff::imagecache::UnpackLimits limits;
  limits.max_entries = 2000;
  limits.max_bytes = 8 << 20;
  (void)skiff::imagecache::UnpackLayer(blob.string(), dest.string(), limits);
  std::error_code ec;
  fs::remove_all(dest, ec);
  for (const auto& entry : fs::directory_iterator(base, ec)) {  // a half-unpacked sibling too
    if (entry.path().filename().string().rfind("layer", 0) == 0) fs::remove_all(entry.path(), ec);
  }
  std::ifstream kept(sentinel);
  std::string text;
  kept >> text;
  if (text != "keep") std::abort();  // a write outside the layer
  return 0;
}
