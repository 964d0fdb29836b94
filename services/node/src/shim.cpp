#include "skiff/node/shim.h"

#include <fcntl.h>
#include <poll.h>
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

std::string NowRfc3339() {
  auto now = std::chrono::system_clock::now();
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(micros / 1000000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(micros % 1000000));
  return buffer;
}

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

int RunShim(const ShimOptions& options) {
  ::mkdir(options.state_dir.c_str(), 0700);
  WriteFileAtomically(options.state_dir + "/shim.pid", std::to_string(::getpid()) + "\n");
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) return 126;

  std::vector<std::string> args{options.runc};
  if (!options.runc_root.empty()) args.insert(args.end(), {"--root", options.runc_root});
  args.insert(args.end(), {"run", "--keep", "--bundle", options.bundle, options.container_id});
  pid_t child = ::fork();
  if (child == 0) {
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  WriteFileAtomically(options.state_dir + "/started", NowRfc3339() + "\n");

  RotatingLog log(options.log_path, options.log_max_bytes, options.log_files);
  std::string partial[2];
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  const char* names[2] = {"stdout", "stderr"};
  int open_streams = 2;
  long oom_kills = 0;
  char buffer[65536];
  while (open_streams > 0) {
    int ready = ::poll(fds, 2, 200);
    if (!options.memory_cgroup.empty()) oom_kills = std::max(oom_kills, ReadOomKills(options.memory_cgroup));
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
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  // With --keep the cgroup is still there: read the final OOM count, then clean up.
  if (!options.memory_cgroup.empty()) oom_kills = std::max(oom_kills, ReadOomKills(options.memory_cgroup));
  int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::string finished = NowRfc3339();
  pid_t deleter = ::fork();
  if (deleter == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (options.runc_root.empty()) {
      ::execlp(options.runc.c_str(), options.runc.c_str(), "delete", "--force", options.container_id.c_str(), nullptr);
    } else {
      ::execlp(options.runc.c_str(), options.runc.c_str(), "--root", options.runc_root.c_str(), "delete", "--force",
               options.container_id.c_str(), nullptr);
    }
    ::_exit(127);
  }
  ::waitpid(deleter, nullptr, 0);
  std::ostringstream exit_record;
  exit_record << exit_code << " " << finished << " " << (oom_kills > 0 ? "oom" : "-") << "\n";
  WriteFileAtomically(options.state_dir + "/exit", exit_record.str());
  return exit_code;
}

}  // namespace skiff::node
