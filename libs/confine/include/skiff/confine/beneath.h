#pragma once

#include <optional>
#include <string>
#include <string_view>

// File operations confined beneath a directory descriptor. Every path here is resolved with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): a symlink or ".."
// anywhere on the way is refused (ELOOP / EXDEV), so content a tenant controls (an image
// layer, a cloned repository, a volume) can never redirect a host-side write or mount.
namespace skiff::confine {

// An owned file descriptor; -1 when empty.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int Get() const { return fd_; }
  bool Valid() const { return fd_ >= 0; }
  int Release();

 private:
  int fd_ = -1;
};

// Opens a directory the host itself names (a trusted path); O_DIRECTORY | O_CLOEXEC.
UniqueFd OpenDirectory(const std::string& path);

// Opens `relative` beneath `dir` (empty or "." opens `dir` itself again). On failure returns
// an empty fd and sets errno: ELOOP for a symlink on the way, EXDEV for an escape.
UniqueFd OpenBeneath(int dir, std::string_view relative, int flags, unsigned mode = 0);

// Creates the directories of `relative` beneath `dir` that are missing (mode `mode`) and
// opens the last one; a symlink or non-directory on the way fails it (errno as above).
UniqueFd MakeDirectoriesBeneath(int dir, std::string_view relative, unsigned mode = 0755);

// Removes `name` (one component) in `dir` and, if it is a directory, all it holds, never
// following a symlink. Absent is success. false with errno on failure.
bool RemoveTreeAt(int dir, const std::string& name);

// Gives `dir` and everything beneath it to uid:gid, never following a symlink (a link itself
// changes owner) and never crossing into another mount. false with errno on failure.
bool ChownTreeAt(int dir, unsigned uid, unsigned gid);

// Bind-mounts the directory `relative` beneath `dir` onto `target` (a host path the caller
// owns, created if missing). The mount is made from the opened descriptor, so what gets
// mounted is exactly what was resolved. Error text on failure.
std::optional<std::string> BindBeneath(int dir, std::string_view relative, const std::string& target);

// "/proc/self/fd/<fd>", for system calls that take a path but should act on a descriptor.
std::string FdPath(int fd);

}  // namespace skiff::confine
