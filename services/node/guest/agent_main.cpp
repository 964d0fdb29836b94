// skiff-guest-agent: PID 1 of a microVM sandbox (issue 9). A static binary packed into the
// initramfs with busybox and runc. It mounts the guest's file systems, loads the virtio
// modules, mounts the sandbox's shared directory (virtio-fs) at /sandbox, and serves the node
// over the virtio-serial port `skiff.agent`: it starts containers from bundles in the share
// under Skiff's shim (which writes the log, `started` and `exit` back into the share, where the
// node reads them as on a runc node), signals them, runs exec sessions, and reports each exit. PID 1 itself only reaps orphans; the agent is its child, so it waits
// for its own children alone and never takes an exec's exit status from its reader.
#include <dirent.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <memory>
#include <mutex>

#include "skiff/node/exec_process.h"
#include "skiff/node/guest_channel.h"
#include "skiff/node/shim.h"
#include "skiff/node/socket_probe.h"
#include "skiff/node/v1/guest.pb.h"

namespace {

namespace v1 = skiff::node::v1;

void Log(const std::string& line) {
  // The kernel console (ttyS0): the node keeps it as the VM's console log.
  std::fprintf(stderr, "skiff-guest-agent: %s\n", line.c_str());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void MountOrLog(const char* source, const char* target, const char* type, unsigned long flags, const char* data) {
  ::mkdir(target, 0755);
  if (::mount(source, target, type, flags, data) != 0 && errno != EBUSY) {
    Log(std::string("mount ") + type + " on " + target + ": " + std::strerror(errno));
  }
}

void LoadModules() {
  std::istringstream order(ReadFile("/lib/modules/skiff/order"));
  for (std::string name; std::getline(order, name);) {
    if (name.empty()) continue;
    const std::string path = "/lib/modules/skiff/" + name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || (::syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)) {
      Log("load " + name + ": " + std::strerror(errno));
    }
    if (fd >= 0) ::close(fd);
  }
}

// runc and crun copy their own binary into a sealed memfd and re-execute it before each
// container start (CVE-2019-5736: a container must not overwrite the runtime through
// /proc/self/exe). Both skip the copy for a binary on a read-only file system when
// _LIBCONTAINER_CLONED_BINARY=1 is set, as their authors document. The initramfs is tmpfs,
// whose files take seals, which crun 1.8 misreads, going round the copy twice: three loads of a
// dynamically linked binary, most of a container start under TCG. So the runtime is served
// from a read-only ramfs (no seals) instead, and every start is one load.
void ProtectRuntimeBinary(const std::string& path) {
  const std::string dir = "/run/runtime", copy = dir + "/" + path.substr(path.rfind('/') + 1);
  ::mkdir(dir.c_str(), 0755);
  bool ok = ::mount("ramfs", dir.c_str(), "ramfs", MS_NOSUID | MS_NODEV, "mode=0755") == 0;
  int source = ok ? ::open(path.c_str(), O_RDONLY | O_CLOEXEC) : -1;
  int target = source >= 0 ? ::open(copy.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755) : -1;
  struct stat info {};
  ok = target >= 0 && ::fstat(source, &info) == 0;
  for (off_t done = 0; ok && done < info.st_size;) {
    ssize_t n = ::sendfile(target, source, nullptr, static_cast<size_t>(info.st_size - done));
    if (n <= 0) ok = false;
    else done += n;
  }
  if (source >= 0) ::close(source);
  if (target >= 0) ::close(target);
  if (!ok || ::mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0 ||
      ::mount(copy.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return Log("read-only " + path + ": " + std::strerror(errno));
  }
  ::setenv("_LIBCONTAINER_CLONED_BINARY", "1", 1);
}

void LoopbackUp() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (fd >= 0 && ::ioctl(fd, SIOCGIFFLAGS, &request) == 0) {
    request.ifr_flags |= IFF_UP;
    ::ioctl(fd, SIOCSIFFLAGS, &request);
  }
  if (fd >= 0) ::close(fd);
}

bool SetAddress(int sock, const std::string& ifname, unsigned long request, const std::string& address) {
  ifreq r{};
  std::strncpy(r.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  auto* in = reinterpret_cast<sockaddr_in*>(&r.ifr_addr);
  in->sin_family = AF_INET;
  if (::inet_pton(AF_INET, address.c_str(), &in->sin_addr) != 1) return false;
  return ::ioctl(sock, request, &r) == 0;
}

// `skiff.net=ADDRESS/PREFIX,GATEWAY,MTU`: the group's address on the VM's one NIC (the host
// mirrors the group's interface to it, and QEMU gave it the group's MAC), and its default route.
void ConfigureNetwork(const std::string& spec) {
  std::istringstream parts(spec);
  std::string cidr, gateway, mtu;
  std::getline(parts, cidr, ',');
  std::getline(parts, gateway, ',');
  std::getline(parts, mtu, ',');
  const auto slash = cidr.find('/');
  if (slash == std::string::npos) return Log("skiff.net: no prefix length in " + cidr);
  const std::string address = cidr.substr(0, slash);
  const int prefix = std::atoi(cidr.substr(slash + 1).c_str());
  std::string ifname;
  for (int attempt = 0; attempt < 200 && ifname.empty(); ++attempt) {
    if (DIR* dir = ::opendir("/sys/class/net")) {
      while (dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name != "." && name != ".." && name != "lo") ifname = name;
      }
      ::closedir(dir);
    }
    if (ifname.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (ifname.empty()) return Log("skiff.net: the VM has no network interface");
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const uint32_t mask = prefix <= 0 ? 0 : htonl(~uint32_t{0} << (32 - prefix));
  char mask_text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &mask, mask_text, sizeof mask_text);
  ifreq r{};
  std::strncpy(r.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  r.ifr_mtu = std::atoi(mtu.c_str()) > 0 ? std::atoi(mtu.c_str()) : 1500;
  ::ioctl(sock, SIOCSIFMTU, &r);
  if (!SetAddress(sock, ifname, SIOCSIFADDR, address) || !SetAddress(sock, ifname, SIOCSIFNETMASK, mask_text)) {
    Log("skiff.net: set " + cidr + " on " + ifname + ": " + std::strerror(errno));
  }
  if (::ioctl(sock, SIOCGIFFLAGS, &r) == 0) {
    r.ifr_flags |= IFF_UP;
    ::ioctl(sock, SIOCSIFFLAGS, &r);
  }
  if (!gateway.empty()) {
    rtentry route{};
    auto* dst = reinterpret_cast<sockaddr_in*>(&route.rt_dst);
    auto* via = reinterpret_cast<sockaddr_in*>(&route.rt_gateway);
    auto* genmask = reinterpret_cast<sockaddr_in*>(&route.rt_genmask);
    dst->sin_family = via->sin_family = genmask->sin_family = AF_INET;
    ::inet_pton(AF_INET, gateway.c_str(), &via->sin_addr);
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    route.rt_dev = const_cast<char*>(ifname.c_str());
    if (::ioctl(sock, SIOCADDRT, &route) != 0) Log("skiff.net: route via " + gateway + ": " + std::strerror(errno));
  }
  ::close(sock);
}

// The virtio-serial port named `name` (no udev here to make /dev/virtio-ports links).
int OpenPort(const std::string& name) {
  for (int attempt = 0; attempt < 500; ++attempt) {
    if (DIR* dir = ::opendir("/sys/class/virtio-ports")) {
      while (dirent* entry = ::readdir(dir)) {
        const std::string port = entry->d_name;
        if (port[0] == '.') continue;
        std::string label = ReadFile("/sys/class/virtio-ports/" + port + "/name");
        while (!label.empty() && label.back() == '\n') label.pop_back();
        if (label == name) {
          ::closedir(dir);
          return ::open(("/dev/" + port).c_str(), O_RDWR | O_CLOEXEC);
        }
      }
      ::closedir(dir);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

std::string KernelArgument(const std::string& key, const std::string& fallback) {
  std::istringstream words(ReadFile("/proc/cmdline"));
  for (std::string word; words >> word;) {
    if (word.rfind(key + "=", 0) == 0) return word.substr(key.size() + 1);
  }
  return fallback;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Container {
  std::string name;
  pid_t pid = 0;  // its shim, while the container runs
};


class Agent {
 public:
  explicit Agent(int port) : port_(port) {}

  void Send(const v1::GuestMessage& message) {
    const std::string frame = skiff::node::EncodeGuestFrame(message);
    std::lock_guard lock(send_mutex_);  // exec sessions send from their reader threads
    size_t written = 0;
    while (written < frame.size()) {
      ssize_t n = ::write(port_, frame.data() + written, frame.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the host went away; it reconnects and learns the state anew
      written += static_cast<size_t>(n);
    }
  }

  void Run() {
    sigset_t child;
    sigemptyset(&child);
    sigaddset(&child, SIGCHLD);
    sigprocmask(SIG_BLOCK, &child, nullptr);
    int children = ::signalfd(-1, &child, SFD_CLOEXEC | SFD_NONBLOCK);

    utsname names{};
    ::uname(&names);
    v1::GuestMessage ready;
    ready.mutable_ready()->set_kernel_release(names.release);
    Send(ready);

    skiff::node::GuestFrameReader reader;
    char buffer[65536];
    for (;;) {
      pollfd fds[2] = {{port_, POLLIN, 0}, {children, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents) Reap(children);
      if (fds[0].revents & POLLIN) {
        ssize_t n = ::read(port_, buffer, sizeof buffer);
        if (n > 0) reader.Append(buffer, static_cast<size_t>(n));
        while (auto frame = reader.Next()) {
          v1::GuestRequest request;
          if (request.ParseFromString(*frame)) Handle(request);
        }
        if (reader.Broken()) reader = skiff::node::GuestFrameReader();
      } else if (fds[0].revents & (POLLHUP | POLLERR)) {
        // No host connected (virtio-serial reports HUP): wait for one instead of spinning. A node
        // that comes back (after its restart) starts with whole frames: drop any half one.
        reader = skiff::node::GuestFrameReader();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

 private:
  void Reap(int children) {
    signalfd_siginfo info{};
    while (::read(children, &info, sizeof info) > 0) {
    }
    for (auto& [name, c] : containers_) {
      int status = 0;
      if (c.pid <= 0 || ::waitpid(c.pid, &status, WNOHANG) != c.pid) continue;
      v1::GuestMessage message;
      auto* exited = message.mutable_exited();
      exited->set_name(name);
      // The shim exits with the container's code (and has written it to the share already).
      exited->set_exit_code(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      exited->set_finished_at_ms(NowMs());
      Send(message);
      c.pid = 0;
    }
    // Finished exec sessions: their readers are done, so they can go.
    for (auto it = execs_.begin(); it != execs_.end();) {
      it = it->second->Done() ? execs_.erase(it) : std::next(it);
    }
  }

  void Reply(uint64_t id, const std::string& error) {
    v1::GuestMessage message;
    message.mutable_reply()->set_request_id(id);
    message.mutable_reply()->set_error(error);
    Send(message);
  }

  void Handle(const v1::GuestRequest& request) {
    switch (request.request_case()) {
      case v1::GuestRequest::kStart:
        Reply(request.request_id(), Start(request.start()));
        break;
      case v1::GuestRequest::kSignal:
        Reply(request.request_id(), Signal(request.signal()));
        break;
      case v1::GuestRequest::kPing:
        Reply(request.request_id(), "");
        break;
      case v1::GuestRequest::kProbe: {
        // On a thread: a probe waits up to its timeout, and the channel must keep serving.
        skiff::node::SocketProbeSpec spec;
        spec.port = request.probe().port();
        spec.http = request.probe().http();
        spec.path = request.probe().path();
        spec.scheme = request.probe().scheme();
        for (const auto& header : request.probe().headers()) spec.headers.emplace_back(header.name(), header.value());
        spec.timeout = std::chrono::milliseconds(std::max(100, request.probe().timeout_ms()));
        std::thread([this, id = request.request_id(), spec] {
          auto result = skiff::node::ProbeSocket("", spec);
          Reply(id, result.success ? "" : (result.message.empty() ? "probe failed" : result.message));
        }).detach();
        break;
      }
      case v1::GuestRequest::kUsage: {
        // cgroup v2 in the guest: cpu.stat's usage_usec and memory.current.
        const std::string dir = "/sys/fs/cgroup" + request.usage().cgroup_path();
        std::istringstream stat(ReadFile(dir + "/cpu.stat"));
        std::string key;
        double usec = -1;
        for (double value; stat >> key >> value;) {
          if (key == "usage_usec") usec = value;
        }
        const std::string memory = ReadFile(dir + "/memory.current");
        v1::GuestMessage message;
        auto* reply = message.mutable_reply();
        reply->set_request_id(request.request_id());
        if (usec < 0 || memory.empty()) {
          reply->set_error("no cgroup " + request.usage().cgroup_path());
        } else {
          reply->set_cpu_seconds(usec / 1e6);
          reply->set_memory_bytes(std::atof(memory.c_str()));
        }
        Send(message);
        break;
      }
      case v1::GuestRequest::kExecStart:
        Reply(request.request_id(), ExecStart(request.exec_start()));
        break;
      case v1::GuestRequest::kExecInput: {
        auto it = execs_.find(request.exec_input().exec_id());
        if (it == execs_.end()) {
          Reply(request.request_id(), "no such exec session");
          break;
        }
        if (!request.exec_input().data().empty()) it->second->Write(request.exec_input().data());
        if (request.exec_input().close()) it->second->CloseInput();
        Reply(request.request_id(), "");
        break;
      }
      case v1::GuestRequest::kExecResize: {
        auto it = execs_.find(request.exec_resize().exec_id());
        if (it != execs_.end()) {
          it->second->Resize(static_cast<uint16_t>(request.exec_resize().rows()),
                             static_cast<uint16_t>(request.exec_resize().cols()));
        }
        Reply(request.request_id(), it == execs_.end() ? "no such exec session" : "");
        break;
      }
      case v1::GuestRequest::kExecKill: {
        auto it = execs_.find(request.exec_kill());
        if (it != execs_.end()) it->second->Kill();
        Reply(request.request_id(), "");
        break;
      }
      case v1::GuestRequest::kShutdown:
        Reply(request.request_id(), "");
        ::sync();
        ::reboot(RB_POWER_OFF);
        break;
      default:
        Reply(request.request_id(), "unknown request");
    }
  }

  std::string Start(const v1::GuestStartContainer& start) {
    const std::string& name = start.name();
    if (name.empty() || name.find('/') != std::string::npos) return "bad container name";
    if (start.state_dir().empty() || start.log_path().empty()) return "no state directory or log path";
    auto existing = containers_.find(name);
    if (existing != containers_.end() && existing->second.pid != 0) return "container " + name + " runs already";
    skiff::node::ShimOptions options;
    options.runc = "/bin/runc";
    options.runc_root = "/run/runc";
    options.container_id = name;
    options.bundle = start.bundle();
    options.state_dir = start.state_dir();
    options.log_path = start.log_path();
    if (start.log_max_bytes() > 0) options.log_max_bytes = start.log_max_bytes();
    if (start.log_files() > 0) options.log_files = start.log_files();
    options.no_pivot = true;
    if (::access(("/run/runc/" + name).c_str(), F_OK) == 0) {  // an earlier run's leftovers
      skiff::node::RunProgram({"/bin/runc", "--root", "/run/runc", "delete", "--force", name});
    }
    const std::string started = options.state_dir + "/started";
    ::unlink(started.c_str());
    int ready[2];  // the shim says when `started` is written: no polling of the share
    if (::pipe2(ready, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
    pid_t shim = ::fork();
    if (shim == 0) {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      ::setsid();
      ::close(ready[0]);
      options.started_fd = ready[1];
      _exit(skiff::node::RunShim(options));
    }
    ::close(ready[1]);
    if (shim < 0) {
      ::close(ready[0]);
      return std::string("fork: ") + std::strerror(errno);
    }
    containers_[name] = Container{name, shim};
    // The shim writes `started` once runc has started the container or failed to (then `exit`
    // follows): as on a runc node, a failed start shows as the container's exit.
    pollfd wait{ready[0], POLLIN, 0};
    int polled;
    while ((polled = ::poll(&wait, 1, 60000)) < 0 && errno == EINTR) {
    }
    char byte = 0;
    const bool said_started = polled > 0 && ::read(ready[0], &byte, 1) == 1;
    ::close(ready[0]);
    if (said_started) return "";
    if (polled == 0) return "the container did not start within 60 s";
    int status = 0;
    ::waitpid(shim, &status, 0);
    containers_[name].pid = 0;
    return "the shim ended before the container started (status " + std::to_string(status) + ")";
  }

  std::string Signal(const v1::GuestSignalContainer& signal) {
    auto it = containers_.find(signal.name());
    if (it == containers_.end() || it->second.pid == 0) return "no running container " + signal.name();
    std::string output;
    if (skiff::node::RunProgram({"/bin/runc", "--root", "/run/runc", "kill", signal.name(), std::to_string(signal.signal())},
                   &output) != 0) {
      return "runc kill: " + output;
    }
    return "";
  }

  std::string ExecStart(const v1::GuestExecStart& start) {
    if (start.command().empty()) return "no command given";
    auto it = containers_.find(start.name());
    if (it == containers_.end() || it->second.pid == 0) return "container " + start.name() + " is not running";
    if (execs_.count(start.exec_id())) return "exec session exists";
    const uint64_t id = start.exec_id();
    const std::string pid_file = "/run/skiff/exec-" + std::to_string(id) + ".pid";
    ::mkdir("/run/skiff", 0700);
    std::vector<std::string> argv{"/bin/runc", "--root", "/run/runc", "exec", "--pid-file", pid_file};
    const bool from_file = !start.process_file().empty();
    if (from_file) {
      // Only a file in the share's containers/<name>/exec: the node writes there, nothing else does.
      const std::string expected = "/sandbox/containers/" + start.name() + "/exec/";
      if (start.process_file().compare(0, expected.size(), expected) != 0 ||
          start.process_file().find("/..") != std::string::npos) {
        return "the exec's process file is outside its container";
      }
      argv.insert(argv.end(), {"--process", start.process_file(), start.name()});
    } else {
      if (start.tty()) argv.push_back("--tty");
      argv.push_back(start.name());
      argv.insert(argv.end(), start.command().begin(), start.command().end());
    }
    skiff::node::ExecSpec spec;
    spec.tty = start.tty();
    spec.rows = static_cast<uint16_t>(start.rows());
    spec.cols = static_cast<uint16_t>(start.cols());
    skiff::node::ExecCallbacks callbacks;
    callbacks.on_output = [this, id](std::string_view data) {
      v1::GuestMessage message;
      message.mutable_exec_output()->set_exec_id(id);
      message.mutable_exec_output()->set_data(data.data(), data.size());
      Send(message);
    };
    callbacks.on_exit = [this, id](int code) {
      v1::GuestMessage message;
      message.mutable_exec_exited()->set_exec_id(id);
      message.mutable_exec_exited()->set_exit_code(code);
      Send(message);
      // Wake the main loop so it lets the finished session go.
      ::kill(::getpid(), SIGCHLD);
    };
    std::string error;
    auto process = skiff::node::SpawnProcess(argv, spec, std::move(callbacks), &error, pid_file,
                                             from_file ? start.process_file() : std::string());
    if (!process) return error;
    execs_[id] = std::move(process);
    return "";
  }

  int port_;
  std::mutex send_mutex_;
  std::map<std::string, Container> containers_;
  std::map<uint64_t, std::unique_ptr<skiff::node::ExecProcess>> execs_;
};

}  // namespace

int main() {
  if (::getpid() == 1) {
    MountOrLog("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    MountOrLog("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    MountOrLog("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    MountOrLog("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666");
    MountOrLog("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    MountOrLog("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, nullptr);
    MountOrLog("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    LoadModules();
    ProtectRuntimeBinary("/bin/runc");
    LoopbackUp();
    if (auto net = KernelArgument("skiff.net", ""); !net.empty()) ConfigureNetwork(net);
    MountOrLog(KernelArgument("skiff.share", "skiff").c_str(), "/sandbox", "virtiofs", 0, nullptr);
  }
  if (::getpid() == 1) {
    // PID 1 inherits every orphan and reaps it; the agent runs as its child, so that the agent
    // waits only for its own children (an exec's status stays with the exec's reader).
    pid_t agent = ::fork();
    if (agent > 0) {
      for (;;) {
        int status = 0;
        pid_t pid = ::wait(&status);
        if (pid == agent || (pid < 0 && errno == ECHILD)) {
          Log("the agent exited: powering off");
          ::sync();
          ::reboot(RB_POWER_OFF);
        }
      }
    }
  }
  int port = OpenPort(KernelArgument("skiff.port", "skiff.agent"));
  if (port < 0) {
    Log("no virtio-serial port for the node");
    if (::getpid() == 1) ::reboot(RB_POWER_OFF);
    return 1;
  }
  Agent(port).Run();
  return 0;
}
