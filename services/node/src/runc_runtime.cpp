#include "skiff/node/sandbox_runtime.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "skiff/node/shim.h"

#include <google/protobuf/util/json_util.h>

#include "skiff/confine/mounts.h"

namespace skiff::node {
namespace fs = std::filesystem;


std::optional<std::string> CreateNetworkNamespace(const std::string& path) {
  // In a thread of this process, not by spawning `ip` twice: network namespaces are per thread,
  // so the thread unshares, brings its loopback up and pins the namespace with a bind mount.
  std::optional<std::string> error;
  std::thread worker([&] {
    fs::create_directories(fs::path(path).parent_path());
    int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0) {
      error = "create " + path + ": " + std::strerror(errno);
      return;
    }
    ::close(fd);
    if (::unshare(CLONE_NEWNET) != 0) {
      error = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      ::unlink(path.c_str());
      return;
    }
    const std::string self = "/proc/self/task/" + std::to_string(::syscall(SYS_gettid)) + "/ns/net";
    if (::mount(self.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      error = "bind " + path + ": " + std::strerror(errno);
      ::unlink(path.c_str());
      return;
    }
    int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq request{};
    std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (sock < 0 || ::ioctl(sock, SIOCGIFFLAGS, &request) != 0 ||
        (request.ifr_flags |= IFF_UP, ::ioctl(sock, SIOCSIFFLAGS, &request) != 0)) {
      error = std::string("bring up lo: ") + std::strerror(errno);
    }
    if (sock >= 0) ::close(sock);
  });
  worker.join();
  return error;
}

std::optional<std::string> CreateNamespacesInRange(const confine::IdRange& range, const std::string& userns_path,
                                                   const std::string& netns_path) {
  for (const auto& path : {userns_path, netns_path}) {
    fs::create_directories(fs::path(path).parent_path());
    int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0) return "create " + path + ": " + std::strerror(errno);
    ::close(fd);
  }
  auto undo = [&] {
    for (const auto& path : {userns_path, netns_path}) {
      ::umount2(path.c_str(), MNT_DETACH);
      ::unlink(path.c_str());
    }
  };
  int to_parent[2], to_child[2];
  if (::pipe2(to_parent, O_CLOEXEC) != 0) return undo(), std::string("pipe: ") + std::strerror(errno);
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, to_child) != 0) {
    for (int fd : to_parent) ::close(fd);
    return undo(), std::string("pipe: ") + std::strerror(errno);
  }
  // The child makes the user namespace, then (root in it) the network namespace it owns, and
  // brings its loopback up; the parent maps the ids and pins both with bind mounts. The child
  // makes only system calls: this process has threads.
  pid_t child = ::fork();
  if (child == 0) {
    ::close(to_parent[0]);
    ::close(to_child[1]);
    char step = 'x';
    if (::unshare(CLONE_NEWUSER) == 0) step = 'u';
    (void)!::write(to_parent[1], &step, 1);
    if (step != 'u' || ::read(to_child[0], &step, 1) != 1 || step != 'm') ::_exit(1);
    step = 'x';
    if (::unshare(CLONE_NEWNET) == 0) {
      int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      ifreq request{};
      request.ifr_name[0] = 'l';
      request.ifr_name[1] = 'o';
      if (sock >= 0 && ::ioctl(sock, SIOCGIFFLAGS, &request) == 0) {
        request.ifr_flags |= IFF_UP;
        if (::ioctl(sock, SIOCSIFFLAGS, &request) == 0) step = 'n';
      }
    }
    (void)!::write(to_parent[1], &step, 1);
    // Until the parent pinned them: a byte, not end of file, because a child another thread
    // forks meanwhile holds a copy of the pipe's write end.
    (void)!::read(to_child[0], &step, 1);
    ::_exit(0);
  }
  ::close(to_parent[1]);
  ::close(to_child[0]);
  std::optional<std::string> error;
  char step = 0;
  const std::string proc = "/proc/" + std::to_string(child);
  if (child < 0) {
    error = std::string("fork: ") + std::strerror(errno);
  } else if (::read(to_parent[0], &step, 1) != 1 || step != 'u') {
    error = "unshare(CLONE_NEWUSER) failed";
  } else {
    const std::string map = "0 " + std::to_string(range.host_base) + " " + std::to_string(range.size) + "\n";
    for (const char* file : {"/uid_map", "/gid_map"}) {
      std::ofstream out(proc + file);
      out << map << std::flush;
      if (!out) error = "map ids " + map.substr(0, map.size() - 1) + " in the group's user namespace";
    }
    const char go = error ? 'x' : 'm';
    (void)!::send(to_child[1], &go, 1, MSG_NOSIGNAL);  // no SIGPIPE if the child is gone
    if (!error && (::read(to_parent[0], &step, 1) != 1 || step != 'n')) {
      error = "the group's network namespace could not be made in its user namespace";
    }
    if (!error && ::mount((proc + "/ns/user").c_str(), userns_path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      error = "bind " + userns_path + ": " + std::strerror(errno);
    }
    if (!error && ::mount((proc + "/ns/net").c_str(), netns_path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      error = "bind " + netns_path + ": " + std::strerror(errno);
    }
  }
  const char release = 'r';
  if (child > 0) (void)!::send(to_child[1], &release, 1, MSG_NOSIGNAL);  // the child exits
  ::close(to_child[1]);
  ::close(to_parent[0]);
  if (child > 0) {
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (error) undo();
  return error;
}

std::optional<std::string> DeleteNetworkNamespace(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return "unmount " + path + ": " + std::strerror(errno);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return "remove " + path + ": " + std::strerror(errno);
  return std::nullopt;
}

void WriteHostsAndResolv(const std::string& dir, const SandboxSpec& spec) {
  std::ofstream(dir + "/hosts") << "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                << (spec.address.empty() ? "127.0.1.1" : spec.address) << "\t" << spec.hostname << "\n";
  std::ofstream resolv(dir + "/resolv.conf");
  for (const auto& ns : spec.nameservers) resolv << "nameserver " << ns << "\n";
  if (!spec.search_domains.empty()) {
    resolv << "search";
    for (const auto& domain : spec.search_domains) resolv << " " << domain;
    resolv << "\n";
  }
  if (!spec.dns_options.empty()) {
    resolv << "options";
    for (const auto& option : spec.dns_options) resolv << " " << option;
    resolv << "\n";
  }
}

RuncRuntime::RuncRuntime(RuncRuntimeOptions options) : options_(std::move(options)) {
  fs::create_directories(options_.root + "/sandboxes");
  fs::create_directories(options_.root + "/runc");
  // Nobody but root may list what the node holds; others may only pass through, as the init of a
  // user-namespaced container must to reach its bind mounts' sources (hosts, resolv.conf, volumes).
  const auto traverse_only = fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec;
  for (const auto& dir : {options_.root, options_.root + "/sandboxes"}) {
    fs::permissions(dir, traverse_only, fs::perm_options::replace);
  }
  fs::permissions(options_.root + "/runc", fs::perms::owner_all, fs::perm_options::replace);
  // Spares from before a restart are not tracked any more: remove them (the pool refills).
  for (const auto& entry : fs::directory_iterator(options_.root + "/sandboxes")) {
    const std::string id = entry.path().filename().string();
    if (id.rfind("standby-", 0) == 0) DeleteSandbox(id);
  }
}

std::string RuncRuntime::SandboxDir(const std::string& id) const { return options_.root + "/sandboxes/" + id; }
std::string RuncRuntime::ContainerDir(const std::string& id, const std::string& c) const {
  return SandboxDir(id) + "/containers/" + c;
}
std::string RuncRuntime::RuncId(const std::string& id, const std::string& c) const { return id + "." + c; }
std::string RuncRuntime::LogPath(const std::string& id, const std::string& c) { return ContainerDir(id, c) + "/log"; }
std::string RuncRuntime::VolumeDir(const std::string& id) { return SandboxDir(id) + "/volumes"; }
std::string RuncRuntime::NetworkNamespace(const std::string& id) {
  return "/var/run/netns/" + options_.host_tag + "-" + id;
}

std::optional<std::string> CreateSandboxLayout(const std::string& dir, const std::string& volume_dir,
                                               const std::string& netns, const SandboxSpec& spec) {
  fs::create_directories(dir + "/containers");
  fs::create_directories(volume_dir);
  // The group's network namespace; the network service attaches interfaces to it. With an id
  // range, it belongs to the group's user namespace (made with it).
  if (!fs::exists(netns)) {
    if (spec.ids) {
      if (auto error = CreateNamespacesInRange(*spec.ids, dir + "/userns", netns)) return error;
      std::ofstream(dir + "/ids") << spec.ids->host_base << " " << spec.ids->size << "\n";
    } else if (auto error = CreateNetworkNamespace(netns)) {
      return error;
    }
  } else if (spec.ids) {
    // Namespaces made earlier (this group's before a node restart): only for this very range.
    std::ifstream recorded(dir + "/ids");
    confine::IdRange range;
    if (!(recorded >> range.host_base >> range.size) || range != *spec.ids || !fs::exists(dir + "/userns")) {
      return "the network namespace " + netns + " was not made for the group's id range";
    }
  }
  WriteHostsAndResolv(dir, spec);
  return std::nullopt;
}

std::optional<std::string> RuncRuntime::CreateSandbox(const SandboxSpec& spec) {
  return CreateSandboxLayout(SandboxDir(spec.id), VolumeDir(spec.id), NetworkNamespace(spec.id), spec);
}

std::optional<std::string> RuncRuntime::StartContainer(const std::string& sandbox_id, const ContainerLaunch& input) {
  const std::string dir = ContainerDir(sandbox_id, input.container_name);
  const std::string state = dir + "/state";
  fs::remove_all(state);  // a restart starts from a clean run state; the log continues
  fs::create_directories(dir + "/bundle");
  fs::create_directories(state);
  ContainerLaunch launch = input;
  launch.network_namespace = NetworkNamespace(sandbox_id);
  if (launch.ids) launch.user_namespace = SandboxDir(sandbox_id) + "/userns";
  launch.cgroup_parent = options_.host_tag;
  // A container may not raise RLIMIT_NOFILE past the node's own hard limit.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max != RLIM_INFINITY) {
    launch.open_files_limit = std::min<uint64_t>(launch.open_files_limit, nofile.rlim_max);
  }
  if (launch.hosts_file.empty()) launch.hosts_file = SandboxDir(sandbox_id) + "/hosts";
  if (launch.resolv_file.empty()) launch.resolv_file = SandboxDir(sandbox_id) + "/resolv.conf";
  v1::RuntimeSpec spec = BuildRuntimeSpec(launch, options_.seccomp);
  if (auto error = WriteBundleConfig(dir + "/bundle", spec)) return error;

  std::vector<std::string> args{options_.shim_binary,
                                "--runc", options_.runc,
                                "--runc-root", options_.root + "/runc",
                                "--id", RuncId(sandbox_id, launch.container_name),
                                "--bundle", dir + "/bundle",
                                "--state", state,
                                "--log", dir + "/log",
                                "--log-max-bytes", std::to_string(options_.log_max_bytes),
                                "--log-files", std::to_string(options_.log_files),
                                "--memory-cgroup", "/sys/fs/cgroup/memory" + CgroupPath(sandbox_id, launch.container_name, options_.host_tag)};
  args.insert(args.end(), {"--detach", "1"});
  // posix_spawn (vfork-like: no copy of this process's page tables, which cost ~10 ms per start
  // with fork) in a new session; the shim forks once itself and this one exits at once, so the
  // shim is nobody's child here and survives this process.
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDWR, 0);
  posix_spawn_file_actions_addopen(&files, 1, (dir + "/shim.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&files, 3);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, argv[0], &files, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attributes);
  if (spawned != 0) return std::string("spawn ") + options_.shim_binary + ": " + std::strerror(spawned);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "the shim did not start (see " + dir + "/shim.log)";
  // The shim writes `started` once runc has started the container (or failed to): from then on
  // it can be signalled, and an exit is recorded.
  for (int i = 0; i < 1000 && !fs::exists(state + "/started"); ++i) ::usleep(2000);
  if (!fs::exists(state + "/started")) return "the shim did not start (see " + dir + "/shim.log)";
  return std::nullopt;
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  // A zombie (exited, not yet reaped by whoever adopted it) is not alive.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto close_paren = line.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= line.size() || line[close_paren + 2] != 'Z';
}

bool RuncRuntime::IsRunning(const std::string& sandbox_id, const std::string& container) {
  const std::string state = ContainerDir(sandbox_id, container) + "/state";
  if (fs::exists(state + "/exit") || !fs::exists(state + "/shim.pid")) return false;
  std::ifstream in(state + "/shim.pid");
  pid_t pid = 0;
  in >> pid;
  return ProcessAlive(pid);
}

std::optional<ContainerExit> RuncRuntime::ExitOf(const std::string& sandbox_id, const std::string& container) {
  std::ifstream in(ContainerDir(sandbox_id, container) + "/state/exit");
  ContainerExit exit;
  std::string oom;
  if (!(in >> exit.exit_code >> exit.finished_at >> oom)) return std::nullopt;
  exit.oom_killed = oom == "oom";
  return exit;
}

std::optional<std::string> RuncRuntime::Signal(const std::string& sandbox_id, const std::string& container,
                                               int signal) {
  std::string output;
  if (RunProgram({options_.runc, "--root", options_.root + "/runc", "kill", RuncId(sandbox_id, container),
                  std::to_string(signal)},
                 &output) != 0) {
    return "runc kill: " + output;
  }
  return std::nullopt;
}

std::optional<std::string> RuncRuntime::RemoveContainer(const std::string& sandbox_id, const std::string& container) {
  if (IsRunning(sandbox_id, container)) return "the container is still running";
  std::error_code ec;
  fs::remove_all(ContainerDir(sandbox_id, container) + "/state", ec);
  fs::remove_all(ContainerDir(sandbox_id, container) + "/bundle", ec);
  return std::nullopt;
}

std::optional<std::string> RuncRuntime::CreateSpare(const std::string& spare_id,
                                                    const std::optional<confine::IdRange>& ids) {
  SandboxSpec spare;
  spare.id = spare_id;
  spare.ids = ids;
  return CreateSandboxLayout(SandboxDir(spare_id), VolumeDir(spare_id), NetworkNamespace(spare_id), spare);
}

std::optional<std::string> RuncRuntime::ClaimSpare(const std::string& spare_id, const SandboxSpec& spec) {
  const std::string from = NetworkNamespace(spare_id), to = NetworkNamespace(spec.id);
  if (!fs::exists(from) || fs::exists(to) || fs::exists(SandboxDir(spec.id))) {
    return "spare " + spare_id + " is gone or " + spec.id + " exists";
  }
  // Its namespaces were made for one id range (or none): only a group of that range may take it.
  std::ifstream recorded(SandboxDir(spare_id) + "/ids");
  std::optional<confine::IdRange> spare_ids;
  if (confine::IdRange range; recorded >> range.host_base >> range.size) spare_ids = range;
  if (spare_ids != spec.ids) return "spare " + spare_id + " was made for another id range";
  // The namespace lives as long as a mount holds it: bind it at the group's name, then drop the
  // spare's (a move would fail on the shared /var/run/netns mount).
  { std::ofstream(to).flush(); }
  if (::mount(from.c_str(), to.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    std::string error = "bind " + from + " at " + to + ": " + std::strerror(errno);
    ::unlink(to.c_str());
    return error;
  }
  DeleteNetworkNamespace(from);
  std::error_code ec;
  fs::rename(SandboxDir(spare_id), SandboxDir(spec.id), ec);
  if (ec) return "rename " + SandboxDir(spare_id) + ": " + ec.message();
  return CreateSandbox(spec);  // writes hosts and resolv.conf; the rest exists already
}

std::optional<std::string> RuncRuntime::DeleteSandbox(const std::string& sandbox_id) {
  const std::string dir = SandboxDir(sandbox_id);
  if (fs::exists(dir + "/containers")) {
    for (const auto& entry : fs::directory_iterator(dir + "/containers")) {
      const std::string name = entry.path().filename().string();
      if (IsRunning(sandbox_id, name)) {
        Signal(sandbox_id, name, SIGKILL);
        for (int i = 0; i < 500 && IsRunning(sandbox_id, name); ++i) ::usleep(10000);
      }
    }
  }
  if (fs::exists(NetworkNamespace(sandbox_id))) DeleteNetworkNamespace(NetworkNamespace(sandbox_id));
  std::error_code ec;
  // Volume tmpfs and bound gitRepo directories first: what is removed is then only the sandbox's.
  if (fs::exists(dir)) confine::UnmountBeneath(fs::canonical(dir, ec).string());
  fs::remove_all(dir, ec);
  if (ec) return "remove " + dir + ": " + ec.message();
  return std::nullopt;
}

}  // namespace skiff::node
