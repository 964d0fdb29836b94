#include "skiff/imagecache/layer_unpacker.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "skiff/confine/beneath.h"
#include "skiff/confine/names.h"
#include "skiff/crypto/crypto.h"

namespace skiff::imagecache {
namespace fs = std::filesystem;
using confine::UniqueFd;
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

PullError Unsafe(const std::string& why) {
  return {"UnsafeLayer", "The image has a layer that cannot be unpacked safely: " + why + "."};
}

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};

// Why a path could not be opened beneath the layer, for the error message.
std::string Refusal(const std::string& path) {
  if (errno == ELOOP || errno == EXDEV) return "the path '" + path + "' passes through a symlink";
  if (errno == ENOTDIR) return "the path '" + path + "' passes through a file";
  return "'" + path + "': " + std::strerror(errno);
}

// Extended attributes a layer may carry: the user namespace and file capabilities. Others
// (trusted.overlay.* above all) would steer overlayfs, so they are dropped.
bool IsAllowedXattr(std::string_view name) {
  return name.rfind("user.", 0) == 0 || name == "security.capability";
}

void ApplyXattrs(archive_entry* entry, int fd) {
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  archive_entry_xattr_reset(entry);
  while (archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK) {
    if (name && IsAllowedXattr(name)) ::fsetxattr(fd, name, value, size, 0);
  }
}

timespec EntryTime(time_t seconds, long nanos) { return timespec{seconds, nanos}; }

// Owner, mode (setuid bits after the chown, which clears them), xattrs and times of an open file
// or directory.
void ApplyMetadata(archive_entry* entry, int fd, bool times) {
  ::fchown(fd, static_cast<uid_t>(archive_entry_uid(entry)), static_cast<gid_t>(archive_entry_gid(entry)));
  ::fchmod(fd, archive_entry_perm(entry) & 07777);
  ApplyXattrs(entry, fd);
  if (times) {
    timespec stamps[2] = {EntryTime(archive_entry_atime(entry), archive_entry_atime_nsec(entry)),
                          EntryTime(archive_entry_mtime(entry), archive_entry_mtime_nsec(entry))};
    ::futimens(fd, stamps);
  }
}

struct DirectoryTimes {
  std::string path;
  timespec stamps[2];
};

// libarchive's message for the last error; it has none for some failures (an empty blob).
std::string ArchiveError(archive* in) {
  const char* message = archive_error_string(in);
  return message ? message : "no reason given";
}

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
  auto cleanup = [&] { fs::remove_all(temp, ec); };  // never follows symlinks
  // Every entry is applied beneath this descriptor of the layer's own tree; a symlink the layer
  // planted can never carry a write, whiteout, xattr or link outside it.
  UniqueFd root = confine::OpenDirectory(temp);
  if (!root.Valid()) {
    cleanup();
    return PullError{"CacheIoError", std::string("Cannot open the layer directory: ") + std::strerror(errno) + "."};
  }

  std::unique_ptr<archive, ArchiveDeleter> in(archive_read_new());
  archive_read_support_filter_all(in.get());
  archive_read_support_format_tar(in.get());
  if (archive_read_open_filename(in.get(), blob_path.c_str(), 256 * 1024) != ARCHIVE_OK) {
    cleanup();
    return Unsafe(std::string("not a readable tar archive (") + ArchiveError(in.get()) + ")");
  }

  UnpackStats stats;
  std::vector<DirectoryTimes> directory_times;  // set last: writing into a directory changes its mtime
  archive_entry* entry = nullptr;
  std::vector<char> buffer(256 * 1024);
  auto fail = [&](PullError error) -> PullResult<UnpackStats> {
    cleanup();
    return error;
  };
  while (true) {
    int status = archive_read_next_header(in.get(), &entry);
    if (status == ARCHIVE_EOF) break;
    if (status < ARCHIVE_WARN) return fail(Unsafe(std::string("corrupt archive (") + ArchiveError(in.get()) + ")"));
    if (++stats.entries > limits.max_entries) {
      return fail(Unsafe("more than " + std::to_string(limits.max_entries) + " files"));
    }
    const char* raw_path = archive_entry_pathname(entry);
    if (!raw_path) return fail(Unsafe("an entry without a path"));
    auto safe = SafeEntryPath(raw_path);
    if (!safe) return fail(Unsafe(std::string("the path '") + raw_path + "' leaves the layer"));
    if (safe->empty()) continue;  // "./" itself
    fs::path rel(*safe);
    const std::string base = rel.filename().string();
    UniqueFd parent = confine::MakeDirectoriesBeneath(root.Get(), rel.parent_path().string());
    if (!parent.Valid()) return fail(Unsafe(Refusal(*safe)));

    if (base == kOpaqueMarker) {
      if (::fsetxattr(parent.Get(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
        return fail(PullError{"CacheIoError", "Cannot mark an opaque directory (needs root and xattrs on the cache disk)."});
      }
      continue;
    }
    if (base.rfind(kWhiteoutPrefix, 0) == 0) {
      std::string hidden = base.substr(kWhiteoutPrefix.size());
      if (!confine::IsFileName(hidden)) return fail(Unsafe("a malformed whiteout '" + *safe + "'"));
      if (!confine::RemoveTreeAt(parent.Get(), hidden) ||
          ::mknodat(parent.Get(), hidden.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
        return fail(PullError{"CacheIoError", "Cannot create an overlay whiteout (needs root): " +
                                                  std::string(std::strerror(errno)) + "."});
      }
      continue;
    }
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK) continue;  // runc provides /dev

    // A later entry replaces an earlier one of the same name, except a directory over a directory.
    struct stat existing {};
    const bool exists = ::fstatat(parent.Get(), base.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
    const bool keep_directory = exists && S_ISDIR(existing.st_mode) && type == AE_IFDIR && !archive_entry_hardlink(entry);
    if (exists && !keep_directory && !confine::RemoveTreeAt(parent.Get(), base)) {
      return fail(PullError{"CacheIoError", "Cannot replace '" + *safe + "': " + std::strerror(errno) + "."});
    }

    if (const char* link = archive_entry_hardlink(entry)) {
      auto safe_link = SafeEntryPath(link);
      if (!safe_link || safe_link->empty()) return fail(Unsafe(std::string("a hard link to '") + link + "' outside the layer"));
      fs::path target(*safe_link);
      UniqueFd target_parent =
          confine::OpenBeneath(root.Get(), target.parent_path().string(), O_PATH | O_DIRECTORY);
      if (!target_parent.Valid()) return fail(Unsafe("a hard link to " + Refusal(*safe_link)));
      if (::linkat(target_parent.Get(), target.filename().c_str(), parent.Get(), base.c_str(), 0) != 0) {
        return fail(Unsafe("the hard link '" + *safe + "' to '" + *safe_link + "': " + std::strerror(errno)));
      }
      continue;
    }
    if (type == AE_IFDIR) {
      if (!keep_directory && ::mkdirat(parent.Get(), base.c_str(), 0700) != 0) {
        return fail(PullError{"CacheIoError", "Cannot create '" + *safe + "': " + std::strerror(errno) + "."});
      }
      UniqueFd directory = confine::OpenBeneath(parent.Get(), base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (!directory.Valid()) return fail(Unsafe(Refusal(*safe)));
      ApplyMetadata(entry, directory.Get(), false);
      directory_times.push_back({*safe,
                                 {EntryTime(archive_entry_atime(entry), archive_entry_atime_nsec(entry)),
                                  EntryTime(archive_entry_mtime(entry), archive_entry_mtime_nsec(entry))}});
      continue;
    }
    if (type == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      // The target is stored, never followed here: it is resolved inside the container, later.
      if (!target || ::symlinkat(target, parent.Get(), base.c_str()) != 0) {
        return fail(PullError{"CacheIoError", "Cannot create the symlink '" + *safe + "'."});
      }
      ::fchownat(parent.Get(), base.c_str(), static_cast<uid_t>(archive_entry_uid(entry)),
                 static_cast<gid_t>(archive_entry_gid(entry)), AT_SYMLINK_NOFOLLOW);
      timespec stamps[2] = {EntryTime(archive_entry_atime(entry), archive_entry_atime_nsec(entry)),
                            EntryTime(archive_entry_mtime(entry), archive_entry_mtime_nsec(entry))};
      ::utimensat(parent.Get(), base.c_str(), stamps, AT_SYMLINK_NOFOLLOW);
      continue;
    }
    if (type != AE_IFREG) return fail(Unsafe("'" + *safe + "' is of an unknown type"));
    UniqueFd file(::openat(parent.Get(), base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!file.Valid()) return fail(PullError{"CacheIoError", "Cannot create '" + *safe + "': " + std::strerror(errno) + "."});
    while (true) {
      la_ssize_t n = archive_read_data(in.get(), buffer.data(), buffer.size());
      if (n == 0) break;
      if (n < 0) return fail(Unsafe(std::string("corrupt data (") + ArchiveError(in.get()) + ")"));
      stats.bytes += n;
      if (stats.bytes > limits.max_bytes) {
        return fail(Unsafe("more than " + std::to_string(limits.max_bytes) + " bytes unpacked"));
      }
      for (la_ssize_t written = 0; written < n;) {
        ssize_t w = ::write(file.Get(), buffer.data() + written, static_cast<size_t>(n - written));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          return fail(PullError{"CacheIoError", "Cannot write '" + *safe + "': " + std::strerror(errno) + "."});
        }
        written += w;
      }
    }
    ApplyMetadata(entry, file.Get(), true);
  }
  for (auto it = directory_times.rbegin(); it != directory_times.rend(); ++it) {
    UniqueFd directory = confine::OpenBeneath(root.Get(), it->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (directory.Valid()) ::futimens(directory.Get(), it->stamps);
  }
  ::fchmod(root.Get(), 0755);
  root = UniqueFd();
  fs::rename(temp, dest, ec);
  if (ec) {
    cleanup();
    if (fs::exists(dest)) return stats;  // another unpack of the same layer finished first
    return PullError{"CacheIoError", "Cannot publish the layer directory: " + ec.message() + "."};
  }
  return stats;
}

}  // namespace skiff::imagecache
