#include "skiff/confine/beneath.h"

#include "skiff/confine/names.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace skiff::confine {
namespace {

constexpr unsigned kConfined = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.Release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

int UniqueFd::Release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

UniqueFd OpenDirectory(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

UniqueFd OpenBeneath(int dir, std::string_view relative, int flags, unsigned mode) {
  if (relative.find('\0') != std::string_view::npos) {
    errno = EINVAL;
    return UniqueFd();
  }
  std::string path(relative);
  if (path.empty()) path = ".";
  open_how how{};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = kConfined;
  long fd;
  do {
    fd = ::syscall(SYS_openat2, dir, path.c_str(), &how, sizeof how);
  } while (fd < 0 && errno == EAGAIN);  // a concurrent rename elsewhere on the system: try again
  return UniqueFd(static_cast<int>(fd));
}

UniqueFd MakeDirectoriesBeneath(int dir, std::string_view relative, unsigned mode) {
  UniqueFd current = OpenBeneath(dir, ".", O_RDONLY | O_DIRECTORY);
  if (!current.Valid()) return current;
  for (std::string_view component : PathComponents(relative)) {
    if (component == ".") continue;
    const std::string part(component);
    UniqueFd next = OpenBeneath(current.Get(), part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!next.Valid() && errno == ENOENT) {
      if (::mkdirat(current.Get(), part.c_str(), mode) != 0 && errno != EEXIST) return UniqueFd();
      next = OpenBeneath(current.Get(), part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    }
    if (!next.Valid()) return UniqueFd();
    current = std::move(next);
  }
  return current;
}

bool RemoveTreeAt(int dir, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT;
  if (!S_ISDIR(st.st_mode)) return ::unlinkat(dir, name.c_str(), 0) == 0 || errno == ENOENT;
  UniqueFd child = OpenBeneath(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!child.Valid()) return false;
  int listing_fd = ::dup(child.Get());
  if (listing_fd < 0) return false;
  DIR* listing = ::fdopendir(listing_fd);
  if (!listing) {
    ::close(listing_fd);
    return false;
  }
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(listing)) {
    std::string entry_name = entry->d_name;
    if (entry_name != "." && entry_name != "..") names.push_back(std::move(entry_name));
  }
  ::closedir(listing);
  for (const auto& entry_name : names) {
    if (!RemoveTreeAt(child.Get(), entry_name)) return false;
  }
  return ::unlinkat(dir, name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT;
}

bool ChownTreeAt(int dir, unsigned uid, unsigned gid) {
  struct stat top {};
  if (::fstat(dir, &top) != 0 || ::fchown(dir, uid, gid) != 0) return false;
  int listing_fd = ::dup(dir);
  if (listing_fd < 0) return false;
  DIR* listing = ::fdopendir(listing_fd);
  if (!listing) {
    ::close(listing_fd);
    return false;
  }
  ::rewinddir(listing);
  std::vector<std::string> subdirectories;
  bool ok = true;
  while (dirent* entry = ::readdir(listing)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    if (S_ISDIR(st.st_mode) && st.st_dev == top.st_dev) {
      subdirectories.push_back(name);
    } else if (::fchownat(dir, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
      ok = false;
    }
  }
  ::closedir(listing);
  for (const auto& name : subdirectories) {
    UniqueFd child = OpenBeneath(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!child.Valid() || !ChownTreeAt(child.Get(), uid, gid)) ok = false;
  }
  return ok;
}

std::string FdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

std::optional<std::string> BindBeneath(int dir, std::string_view relative, const std::string& target) {
  UniqueFd source = OpenBeneath(dir, relative, O_PATH | O_DIRECTORY);
  if (!source.Valid()) {
    const int error = errno;
    if (error == ELOOP || error == EXDEV) return "'" + std::string(relative) + "' leads out of its volume";
    return "'" + std::string(relative) + "': " + std::strerror(error);
  }
  std::error_code ec;
  std::filesystem::create_directories(target, ec);
  if (ec) return "create " + target + ": " + ec.message();
  if (::mount(FdPath(source.Get()).c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return "bind " + target + ": " + std::strerror(errno);
  }
  return std::nullopt;
}

}  // namespace skiff::confine
