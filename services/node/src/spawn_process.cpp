// Commands under a pseudo-terminal or pipes (exec, exec probes); the node runs `runc exec` with
// it, the microVM guest agent the same inside the guest.
#include "skiff/node/exec_process.h"

#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace skiff::node {
namespace {

class LocalProcess : public ExecProcess {
 public:
  LocalProcess(pid_t pid, int input_fd, int output_fd, bool tty, std::string kill_pid_file, std::string scratch_file,
               ExecCallbacks callbacks)
      : pid_(pid), input_fd_(input_fd), output_fd_(output_fd), tty_(tty), kill_pid_file_(std::move(kill_pid_file)),
        scratch_file_(std::move(scratch_file)), callbacks_(std::move(callbacks)) {
    reader_ = std::thread([this] { ReadUntilExit(); });
  }

  ~LocalProcess() override {
    if (!done_) Kill();
    reader_.join();
    if (!tty_ && input_fd_ >= 0) ::close(input_fd_);
    ::close(output_fd_);  // with a terminal, the one descriptor of both ends
    std::error_code ignored;
    if (!kill_pid_file_.empty()) std::filesystem::remove(kill_pid_file_, ignored);
    if (!scratch_file_.empty()) std::filesystem::remove(scratch_file_, ignored);
  }

  bool Write(std::string_view data) override {
    std::lock_guard lock(input_mutex_);
    if (input_fd_ < 0) return false;
    while (!data.empty()) {
      ssize_t n = ::write(input_fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  void CloseInput() override {
    std::lock_guard lock(input_mutex_);
    if (input_fd_ < 0) return;
    if (tty_) {
      // The terminal is both ends: end-of-input is ^D at the line discipline, not a close.
      const char eot = 4;
      (void)::write(input_fd_, &eot, 1);
      input_fd_ = -1;  // closed with the output side
      return;
    }
    ::close(input_fd_);
    input_fd_ = -1;
  }

  void Resize(uint16_t rows, uint16_t cols) override {
    if (!tty_ || done_) return;
    winsize size{rows, cols, 0, 0};
    ::ioctl(output_fd_, TIOCSWINSZ, &size);  // the kernel signals SIGWINCH to runc, which passes the size on
  }

  void Kill() override {
    if (done_) return;
    pid_t target = 0;
    if (!kill_pid_file_.empty()) {
      std::ifstream in(kill_pid_file_);
      in >> target;
    }
    if (target > 0) ::kill(target, SIGKILL);
    ::kill(pid_, SIGKILL);
  }

  bool Done() const override { return done_; }

 private:
  void ReadUntilExit() {
    char buffer[8192];
    for (;;) {
      ssize_t n = ::read(output_fd_, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EOF, or EIO once the terminal's last user closed it
      if (callbacks_.on_output) callbacks_.on_output(std::string_view(buffer, static_cast<size_t>(n)));
    }
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
    done_ = true;
    if (callbacks_.on_exit) callbacks_.on_exit(code);
  }

  pid_t pid_;
  int input_fd_;
  int output_fd_;
  bool tty_;
  std::string kill_pid_file_;
  std::string scratch_file_;
  ExecCallbacks callbacks_;
  std::mutex input_mutex_;
  std::atomic<bool> done_{false};
  std::thread reader_;
};

}  // namespace

std::unique_ptr<ExecProcess> SpawnProcess(const std::vector<std::string>& argv, const ExecSpec& spec,
                                          ExecCallbacks callbacks, std::string* error, std::string kill_pid_file,
                                          std::string scratch_file) {
  int master = -1, slave = -1;
  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1};
  if (spec.tty) {
    winsize size{spec.rows ? spec.rows : uint16_t{24}, spec.cols ? spec.cols : uint16_t{80}, 0, 0};
    if (::openpty(&master, &slave, nullptr, nullptr, &size) != 0) {
      *error = std::string("openpty: ") + std::strerror(errno);
      return nullptr;
    }
    ::fcntl(master, F_SETFD, FD_CLOEXEC);
  } else if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) {
      if (fd >= 0) ::close(fd);
    }
    return nullptr;
  }
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    for (int fd : {master, slave, in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) {
      if (fd >= 0) ::close(fd);
    }
    if (!scratch_file.empty()) ::unlink(scratch_file.c_str());
    return nullptr;
  }
  if (pid == 0) {
    if (spec.tty) {
      ::setsid();
      ::ioctl(slave, TIOCSCTTY, 0);
      ::dup2(slave, 0);
      ::dup2(slave, 1);
      ::dup2(slave, 2);
    } else {
      ::dup2(in_pipe[0], 0);
      ::dup2(out_pipe[1], 1);
      ::dup2(out_pipe[1], 2);
    }
    for (int fd = 3; fd < 1024; ++fd) ::close(fd);
    ::signal(SIGPIPE, SIG_DFL);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  if (spec.tty) {
    ::close(slave);
    return std::make_unique<LocalProcess>(pid, master, master, true, std::move(kill_pid_file), std::move(scratch_file),
                                          std::move(callbacks));
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  return std::make_unique<LocalProcess>(pid, in_pipe[1], out_pipe[0], false, std::move(kill_pid_file),
                                        std::move(scratch_file), std::move(callbacks));
}

int RunProgram(const std::vector<std::string>& args, std::string* output) {
  // Without `output`, the program's stdio goes to /dev/null: a detached child (runc run -d)
  // would otherwise hold a pipe open and the read below would never end.
  int pipe_fds[2] = {-1, -1};
  if (output && ::pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(output ? pipe_fds[1] : null, 1);
    ::dup2(output ? pipe_fds[1] : null, 2);
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  if (output) {
    ::close(pipe_fds[1]);
    std::string collected;
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0) collected.append(buffer, static_cast<size_t>(n));
    ::close(pipe_fds[0]);
    *output = collected;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace skiff::node
