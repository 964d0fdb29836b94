#include "skiff/node/shim.h"

#include "skiff/timefmt/rfc3339.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <vector>

namespace skiff::node {
namespace {

void WriteFileAtomically(const std::string& path, const std::string& content) {
  std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << content;
  }
  std::rename(temp.c_str(), path.c_str());
}

long ReadOomKills(const std::string& memory_cgroup) {
  std::ifstream in(memory_cgroup + "/memory.oom_control");
  std::string key;
  long value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill") return value;
  }
  return 0;
}

}  // namespace

std::string NowRfc3339() { return timefmt::FormatTimeMicros(std::chrono::system_clock::now()); }

std::string FormatLogLine(const std::string& timestamp, const std::string& stream, const std::string& text) {
  return timestamp + " " + stream + " " + text + "\n";
}

RotatingLog::RotatingLog(std::string path, int64_t max_bytes, int files)
    : path_(std::move(path)), max_bytes_(max_bytes), files_(files) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  struct stat st {};
  if (fd_ >= 0 && ::fstat(fd_, &st) == 0) size_ = st.st_size;
}

RotatingLog::~RotatingLog() {
  if (fd_ >= 0) ::close(fd_);
}

void RotatingLog::Rotate() {
  ::close(fd_);
  for (int i = files_ - 1; i >= 1; --i) {
    std::rename((path_ + "." + std::to_string(i)).c_str(), (path_ + "." + std::to_string(i + 1)).c_str());
  }
  if (files_ >= 1) {
    std::rename(path_.c_str(), (path_ + ".1").c_str());
  } else {
    ::unlink(path_.c_str());
  }
  ::unlink((path_ + "." + std::to_string(files_ + 1)).c_str());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
  size_ = 0;
}

void RotatingLog::Write(const std::string& line) {
  if (fd_ < 0) return;
  if (size_ > 0 && size_ + static_cast<int64_t>(line.size()) > max_bytes_) Rotate();
  if (::write(fd_, line.data(), line.size()) > 0) size_ += static_cast<int64_t>(line.size());
}

namespace {

// Runs runc with `args` (after the global flags), stdio on the given descriptors; waits.
int Runc(const ShimOptions& options, std::vector<std::string> args, int out_fd, int err_fd) {
  std::vector<std::string> argv_strings{options.runc};
  if (!options.runc_root.empty()) argv_strings.insert(argv_strings.end(), {"--root", options.runc_root});
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  pid_t child = ::fork();
  if (child == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(out_fd >= 0 ? out_fd : null, 1);
    ::dup2(err_fd >= 0 ? err_fd : null, 2);
    std::vector<char*> argv;
    for (auto& arg : argv_strings) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int RunShim(const ShimOptions& options) {
  ::mkdir(options.state_dir.c_str(), 0700);
  WriteFileAtomically(options.state_dir + "/shim.pid", std::to_string(::getpid()) + "\n");
  // The container's init is started by `runc run --detach`, which exits; as a subreaper this shim
  // inherits the init process and reaps it, so no runc process stays resident per container.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) return 126;

  // One runc invocation: `run --detach` creates and starts the container and exits.
  const std::string pid_file = options.state_dir + "/init.pid";
  std::vector<std::string> run{"run", "--detach"};
  if (options.no_pivot) run.push_back("--no-pivot");
  run.insert(run.end(), {"--bundle", options.bundle, "--pid-file", pid_file, options.container_id});
  int created = Runc(options, run, out_pipe[1], err_pipe[1]);
  pid_t init = 0;
  if (created == 0) {
    std::ifstream in(pid_file);
    in >> init;
  }
  ::close(out_pipe[1]);  // only the container holds the write ends now
  ::close(err_pipe[1]);
  WriteFileAtomically(options.state_dir + "/started", NowRfc3339() + "\n");
  if (options.started_fd >= 0) {
    (void)!::write(options.started_fd, "1", 1);
    ::close(options.started_fd);
  }

  RotatingLog log(options.log_path, options.log_max_bytes, options.log_files);
  std::string partial[2];
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  const char* names[2] = {"stdout", "stderr"};
  int open_streams = 2;
  long oom_kills = 0;
  char buffer[65536];
  int init_status = -1;
  auto reap = [&] {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == init) init_status = status;
    }
  };
  // The streams close when every process holding them (the init and its children) is gone.
  while (open_streams > 0 || (init > 0 && init_status < 0)) {
    int ready = ::poll(fds, 2, 200);
    if (!options.memory_cgroup.empty()) oom_kills = std::max(oom_kills, ReadOomKills(options.memory_cgroup));
    reap();
    if (init_status >= 0 && open_streams > 0 && ready == 0) {
      // The init exited but a leftover child keeps the pipes open: stop waiting for it.
      break;
    }
    if (ready <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n <= 0) {
        if (!partial[i].empty()) log.Write(FormatLogLine(NowRfc3339(), names[i], partial[i]));
        partial[i].clear();
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_streams;
        continue;
      }
      partial[i].append(buffer, static_cast<size_t>(n));
      size_t newline;
      while ((newline = partial[i].find('\n')) != std::string::npos) {
        log.Write(FormatLogLine(NowRfc3339(), names[i], partial[i].substr(0, newline)));
        partial[i].erase(0, newline + 1);
      }
      if (partial[i].size() > 16384) {  // an endless line is cut, not buffered forever
        log.Write(FormatLogLine(NowRfc3339(), names[i], partial[i]));
        partial[i].clear();
      }
    }
  }
  for (int i = 0; i < 2; ++i) {
    if (fds[i].fd >= 0 && !partial[i].empty()) log.Write(FormatLogLine(NowRfc3339(), names[i], partial[i]));
  }
  while (init > 0 && init_status < 0) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, 0);
    if (pid == init) init_status = status;
    if (pid < 0 && errno != EINTR) break;
  }
  // The cgroup is still there until delete: read the final OOM count, then clean up.
  if (!options.memory_cgroup.empty()) oom_kills = std::max(oom_kills, ReadOomKills(options.memory_cgroup));
  int exit_code = created != 0 ? created
                  : init_status < 0 ? 128
                  : WIFEXITED(init_status) ? WEXITSTATUS(init_status)
                                           : 128 + WTERMSIG(init_status);
  std::string finished = NowRfc3339();
  Runc(options, {"delete", "--force", options.container_id}, -1, -1);
  std::ostringstream exit_record;
  exit_record << exit_code << " " << finished << " " << (oom_kills > 0 ? "oom" : "-") << "\n";
  WriteFileAtomically(options.state_dir + "/exit", exit_record.str());
  return exit_code;
}

}  // namespace skiff::node
