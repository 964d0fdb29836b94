#include "skiff/confine/idmap.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace skiff::confine {

UniqueFd UserNamespaceFor(const IdRange& range, std::string* error) {
  if (range.size == 0 || range.host_base == 0 || range.host_base + uint64_t{range.size} > 0xFFFFFFFFull) {
    *error = "invalid id range";
    return UniqueFd();
  }
  int ready[2], release[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return UniqueFd();
  }
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, release) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    ::close(ready[0]);
    ::close(ready[1]);
    return UniqueFd();
  }
  // The child only calls async-signal-safe functions: the parent may have threads.
  pid_t child = ::fork();
  if (child < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    for (int fd : {ready[0], ready[1], release[0], release[1]}) ::close(fd);
    return UniqueFd();
  }
  if (child == 0) {
    ::close(release[1]);  // else its own copy keeps the read below from ever ending
    ::close(ready[0]);
    char status = ::unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
    (void)!::write(ready[1], &status, 1);
    char ignored;
    // Until the parent has the namespace (or gave up): a byte, not end of file, because a child
    // another thread forks meanwhile holds a copy of the pipe's write end.
    (void)!::read(release[0], &ignored, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char status = 'n';
  UniqueFd namespace_fd;
  if (::read(ready[0], &status, 1) == 1 && status == 'y') {
    const std::string proc = "/proc/" + std::to_string(child);
    const std::string map = "0 " + std::to_string(range.host_base) + " " + std::to_string(range.size) + "\n";
    bool mapped = true;
    for (const char* file : {"/uid_map", "/gid_map"}) {
      std::ofstream out(proc + file);
      out << map << std::flush;
      mapped = mapped && out.good();
    }
    if (mapped) namespace_fd = UniqueFd(::open((proc + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
    if (!namespace_fd.Valid()) *error = "cannot map ids " + map.substr(0, map.size() - 1) + ": " + std::strerror(errno);
  } else {
    *error = "unshare(CLONE_NEWUSER) failed";
  }
  ::close(ready[0]);
  const char done = 'r';
  (void)!::send(release[1], &done, 1, MSG_NOSIGNAL);  // the child exits
  ::close(release[1]);
  while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
  return namespace_fd;
}

std::optional<std::string> BindIdmapped(const std::string& source, const IdRange& range, const std::string& target,
                                        bool nosuid_nodev) {
  std::string error;
  UniqueFd user_namespace = UserNamespaceFor(range, &error);
  if (!user_namespace.Valid()) return error;
  UniqueFd tree(static_cast<int>(
      ::syscall(SYS_open_tree, AT_FDCWD, source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW)));
  if (!tree.Valid()) return "open_tree " + source + ": " + std::strerror(errno);
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_IDMAP | (nosuid_nodev ? MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV : 0);
  attr.userns_fd = static_cast<uint64_t>(user_namespace.Get());
  if (::syscall(SYS_mount_setattr, tree.Get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
    return "idmap " + source + ": " + std::strerror(errno);
  }
  if (::syscall(SYS_move_mount, tree.Get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    return "attach " + source + " at " + target + ": " + std::strerror(errno);
  }
  return std::nullopt;
}

}  // namespace skiff::confine
