// skiff-guest-agent: PID 1 of a microVM sandbox (issue 9). A static binary packed into the
// initramfs with busybox and runc. It mounts the guest's file systems, loads the virtio
// modules, mounts the sandbox's shared directory (virtio-fs) at /sandbox, and serves the node
// over the virtio-serial port `skiff.agent`: it starts containers with `runc run --detach`
// (their bundles are in the share), forwards their output, signals them, and reports each
// exit; as PID 1 it inherits and reaps every container's init.
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
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

#include "skiff/node/guest_channel.h"
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
  pid_t pid = 0;
  int out = -1, err = -1;  // read ends of its stdout and stderr
};

class Agent {
 public:
  explicit Agent(int port) : port_(port) {}

  void Send(const v1::GuestMessage& message) {
    const std::string frame = skiff::node::EncodeGuestFrame(message);
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
      std::vector<pollfd> fds{{port_, POLLIN, 0}, {children, POLLIN, 0}};
      std::vector<std::pair<Container*, int>> sources;
      for (auto& [name, c] : containers_) {
        for (int stream : {1, 2}) {
          int fd = stream == 1 ? c.out : c.err;
          if (fd < 0) continue;
          fds.push_back({fd, POLLIN, 0});
          sources.emplace_back(&c, stream);
        }
      }
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents) Drain(*sources[i - 2].first, sources[i - 2].second);
      }
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
        // No host connected (virtio-serial reports HUP): wait for one instead of spinning.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

 private:
  // Reads what a container wrote on `stream`; false at its end.
  bool Drain(Container& c, int stream) {
    int& fd = stream == 1 ? c.out : c.err;
    char buffer[16384];
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      v1::GuestMessage message;
      auto* output = message.mutable_output();
      output->set_name(c.name);
      output->set_stream(stream);
      output->set_data(buffer, static_cast<size_t>(n));
      Send(message);
      return true;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      ::close(fd);
      fd = -1;
    }
    return false;
  }

  void Reap(int children) {
    signalfd_siginfo info{};
    while (::read(children, &info, sizeof info) > 0) {
    }
    int status = 0;
    for (pid_t pid; (pid = ::waitpid(-1, &status, WNOHANG)) > 0;) {
      for (auto& [name, c] : containers_) {
        if (c.pid != pid) continue;
        // Its last output first, then the exit.
        while (c.out >= 0 && Drain(c, 1)) {
        }
        while (c.err >= 0 && Drain(c, 2)) {
        }
        v1::GuestMessage message;
        auto* exited = message.mutable_exited();
        exited->set_name(name);
        exited->set_exit_code(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        exited->set_finished_at_ms(NowMs());
        Send(message);
        c.pid = 0;
      }
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
      case v1::GuestRequest::kSignal: {
        auto it = containers_.find(request.signal().name());
        if (it == containers_.end() || it->second.pid == 0) {
          Reply(request.request_id(), "no running container " + request.signal().name());
        } else {
          Reply(request.request_id(), ::kill(it->second.pid, request.signal().signal()) == 0 ? "" : std::strerror(errno));
        }
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
    auto existing = containers_.find(name);
    if (existing != containers_.end() && existing->second.pid != 0) return "container " + name + " runs already";
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
    const std::string pid_file = "/run/skiff/" + name + ".pid", runc_log = "/run/skiff/" + name + ".runc.log";
    ::mkdir("/run/skiff", 0700);
    ::unlink(pid_file.c_str());
    // Forget an earlier run of the same name (a restart).
    if (pid_t cleaner = ::fork(); cleaner == 0) {
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execl("/bin/runc", "runc", "--root", "/run/runc", "delete", "--force", name.c_str(), nullptr);
      ::_exit(127);
    } else if (cleaner > 0) {
      ::waitpid(cleaner, nullptr, 0);
    }
    pid_t runc = ::fork();
    if (runc == 0) {
      int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      // --no-pivot: the guest's root is the initramfs, which pivot_root cannot leave; the
      // container is moved into its root with MS_MOVE + chroot instead (the VM is the boundary).
      ::execl("/bin/runc", "runc", "--root", "/run/runc", "--log", runc_log.c_str(), "run", "--detach", "--no-pivot",
              "--bundle", start.bundle().c_str(), "--pid-file", pid_file.c_str(), name.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    int status = 0;
    while (runc > 0 && ::waitpid(runc, &status, 0) < 0 && errno == EINTR) {
    }
    if (runc < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ::close(out[0]);
      ::close(err[0]);
      std::string log = ReadFile(runc_log);
      return "runc run failed: " + (log.empty() ? std::string("exit status ") + std::to_string(status) : log);
    }
    Container c;
    c.name = name;
    c.pid = std::atoi(ReadFile(pid_file).c_str());
    c.out = out[0];
    c.err = err[0];
    ::fcntl(c.out, F_SETFL, O_NONBLOCK);
    ::fcntl(c.err, F_SETFL, O_NONBLOCK);
    if (existing != containers_.end()) {
      if (existing->second.out >= 0) ::close(existing->second.out);
      if (existing->second.err >= 0) ::close(existing->second.err);
    }
    containers_[name] = c;
    return "";
  }

  int port_;
  std::map<std::string, Container> containers_;
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
    LoopbackUp();
    MountOrLog(KernelArgument("skiff.share", "skiff").c_str(), "/sandbox", "virtiofs", 0, nullptr);
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
