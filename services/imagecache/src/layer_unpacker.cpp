#include "skiff/imagecache/layer_unpacker.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "skiff/crypto/crypto.h"

namespace skiff::imagecache {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

PullError Unsafe(const std::string& why) {
  return {"UnsafeLayer", "The image has a layer that cannot be unpacked safely: " + why + "."};
}

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct WriterDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};

}  // namespace

std::optional<std::string> SafeEntryPath(const std::string& entry_path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= entry_path.size()) {
    size_t slash = entry_path.find('/', start);
    if (slash == std::string::npos) slash = entry_path.size();
    std::string part = entry_path.substr(start, slash - start);
    start = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") return std::nullopt;
    if (part.find('\0') != std::string::npos) return std::nullopt;
    parts.push_back(part);
  }
  if (parts.empty()) return std::string();  // the layer root itself
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : "/") + part;
  return out;
}

PullResult<UnpackStats> UnpackLayer(const std::string& blob_path, const std::string& dest, const UnpackLimits& limits) {
  const std::string temp = dest + ".tmp-" + crypto::NewUuid();
  std::error_code ec;
  fs::create_directories(temp, ec);
  if (ec) return PullError{"CacheIoError", "Cannot create a layer directory: " + ec.message() + "."};
  auto cleanup = [&] { fs::remove_all(temp, ec); };

  std::unique_ptr<archive, ArchiveDeleter> in(archive_read_new());
  archive_read_support_filter_all(in.get());
  archive_read_support_format_tar(in.get());
  if (archive_read_open_filename(in.get(), blob_path.c_str(), 256 * 1024) != ARCHIVE_OK) {
    cleanup();
    return Unsafe(std::string("not a readable tar archive (") + archive_error_string(in.get()) + ")");
  }
  std::unique_ptr<archive, WriterDeleter> out(archive_write_disk_new());
  // Numeric owners (no name lookup), permissions incl. setuid (the cache root is 0700, so host
  // users cannot reach them), times and xattrs; never write through a symlink or via "..".
  archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                                ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                ARCHIVE_EXTRACT_SECURE_NODOTDOT);

  UnpackStats stats;
  archive_entry* entry = nullptr;
  std::vector<char> buffer(256 * 1024);
  while (true) {
    int status = archive_read_next_header(in.get(), &entry);
    if (status == ARCHIVE_EOF) break;
    if (status < ARCHIVE_WARN) {
      cleanup();
      return Unsafe(std::string("corrupt archive (") + archive_error_string(in.get()) + ")");
    }
    if (++stats.entries > limits.max_entries) {
      cleanup();
      return Unsafe("more than " + std::to_string(limits.max_entries) + " files");
    }
    auto safe = SafeEntryPath(archive_entry_pathname(entry));
    if (!safe) {
      cleanup();
      return Unsafe(std::string("the path '") + archive_entry_pathname(entry) + "' leaves the layer");
    }
    if (safe->empty()) continue;  // "./" itself
    fs::path rel(*safe);
    std::string base = rel.filename().string();
    fs::path parent = fs::path(temp) / rel.parent_path();

    if (base == kOpaqueMarker) {
      fs::create_directories(parent, ec);
      if (::setxattr(parent.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
        cleanup();
        return PullError{"CacheIoError", "Cannot mark an opaque directory (needs root and xattrs on the cache disk)."};
      }
      continue;
    }
    if (base.rfind(kWhiteoutPrefix, 0) == 0) {
      std::string hidden = base.substr(kWhiteoutPrefix.size());
      if (hidden.empty() || hidden == "." || hidden == "..") {
        cleanup();
        return Unsafe("a malformed whiteout '" + *safe + "'");
      }
      fs::create_directories(parent, ec);
      fs::path target = parent / hidden;
      fs::remove_all(target, ec);
      if (::mknod(target.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
        cleanup();
        return PullError{"CacheIoError", "Cannot create an overlay whiteout (needs root)."};
      }
      continue;
    }
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK) continue;  // runc provides /dev
    if (const char* link = archive_entry_hardlink(entry)) {
      auto safe_link = SafeEntryPath(link);
      if (!safe_link || safe_link->empty()) {
        cleanup();
        return Unsafe(std::string("a hard link to '") + link + "' outside the layer");
      }
      archive_entry_set_hardlink(entry, (temp + "/" + *safe_link).c_str());
    }
    archive_entry_set_pathname(entry, (temp + "/" + *safe).c_str());
    if (archive_write_header(out.get(), entry) < ARCHIVE_WARN) {
      std::string why = archive_error_string(out.get()) ? archive_error_string(out.get()) : "write refused";
      cleanup();
      return Unsafe("'" + *safe + "': " + why);
    }
    if (archive_entry_size(entry) > 0) {
      while (true) {
        la_ssize_t n = archive_read_data(in.get(), buffer.data(), buffer.size());
        if (n == 0) break;
        if (n < 0) {
          cleanup();
          return Unsafe(std::string("corrupt data (") + archive_error_string(in.get()) + ")");
        }
        stats.bytes += n;
        if (stats.bytes > limits.max_bytes) {
          cleanup();
          return Unsafe("more than " + std::to_string(limits.max_bytes) + " bytes unpacked");
        }
        if (archive_write_data(out.get(), buffer.data(), static_cast<size_t>(n)) < 0) {
          cleanup();
          return PullError{"CacheIoError", std::string("Cannot write '") + *safe + "': " + archive_error_string(out.get())};
        }
      }
    }
    if (archive_write_finish_entry(out.get()) < ARCHIVE_WARN) {
      std::string why = archive_error_string(out.get()) ? archive_error_string(out.get()) : "finish failed";
      cleanup();
      return Unsafe("'" + *safe + "': " + why);
    }
  }
  archive_write_close(out.get());
  ::chmod(temp.c_str(), 0755);
  fs::rename(temp, dest, ec);
  if (ec) {
    cleanup();
    if (fs::exists(dest)) return stats;  // another unpack of the same layer finished first
    return PullError{"CacheIoError", "Cannot publish the layer directory: " + ec.message() + "."};
  }
  return stats;
}

}  // namespace skiff::imagecache
