#include "skiff/node/observe.h"

#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace skiff::node {

std::optional<Usage> ReadUsage(const std::string& cgroup_root, const std::string& cgroup_path) {
  std::ifstream cpu(cgroup_root + "/cpuacct" + cgroup_path + "/cpuacct.usage");
  std::ifstream memory(cgroup_root + "/memory" + cgroup_path + "/memory.usage_in_bytes");
  double cpu_ns = 0, memory_bytes = 0;
  if (!(cpu >> cpu_ns) || !(memory >> memory_bytes)) return std::nullopt;
  return Usage{cpu_ns / 1e9, memory_bytes};
}

std::optional<std::string> FormatLogLine(std::string_view line, bool timestamps) {
  size_t first = line.find(' ');
  size_t second = first == std::string_view::npos ? std::string_view::npos : line.find(' ', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  std::string text(line.substr(second + 1));
  return timestamps ? std::string(line.substr(0, first)) + " " + text : text;
}

std::string ReadLogs(const std::string& log_path, int tail, bool timestamps, int64_t live_limit) {
  std::vector<std::string> files;
  for (int i = 1; std::filesystem::exists(log_path + "." + std::to_string(i)); ++i) {
    files.insert(files.begin(), log_path + "." + std::to_string(i));  // oldest first
  }
  files.push_back(log_path);
  std::deque<std::string> lines;
  for (const auto& file : files) {
    std::ifstream in(file);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (file == log_path && live_limit >= 0 && static_cast<int64_t>(content.size()) > live_limit) {
      content.resize(static_cast<size_t>(live_limit));
    }
    std::istringstream lines_in(content);
    for (std::string line; std::getline(lines_in, line);) {
      auto formatted = FormatLogLine(line, timestamps);
      if (!formatted) continue;
      lines.push_back(std::move(*formatted));
      if (tail > 0 && static_cast<int>(lines.size()) > tail) lines.pop_front();
    }
  }
  std::string content;
  for (const auto& line : lines) content += line + "\n";
  return content;
}

LogFollower::LogFollower(std::string log_path, int tail, bool timestamps, std::function<bool()> running,
                         std::function<void(std::string_view)> on_output, std::function<void()> on_end)
    : log_path_(std::move(log_path)), tail_(tail), timestamps_(timestamps), running_(std::move(running)),
      on_output_(std::move(on_output)), on_end_(std::move(on_end)) {
  thread_ = std::thread([this] { Run(); });
}

LogFollower::~LogFollower() {
  stop_ = true;
  thread_.join();
}

void LogFollower::Run() {
  int fd = ::open(log_path_.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat info {};
  off_t offset = 0;
  ino_t inode = 0;
  if (fd >= 0 && ::fstat(fd, &info) == 0) {
    offset = info.st_size;
    inode = info.st_ino;
  }
  // The backlog up to `offset`, then everything after it: no line is sent twice or skipped.
  std::string backlog = tail_ == 0 && offset == 0 ? std::string() : ReadLogs(log_path_, tail_, timestamps_, offset);
  if (!backlog.empty()) on_output_(backlog);
  if (fd >= 0) ::lseek(fd, offset, SEEK_SET);

  std::string partial;
  auto drain = [&] {
    char buffer[16384];
    bool any = false;
    ssize_t n;
    while (fd >= 0 && (n = ::read(fd, buffer, sizeof buffer)) > 0) {
      any = true;
      partial.append(buffer, static_cast<size_t>(n));
    }
    std::string out;
    size_t start = 0;
    for (size_t end; (end = partial.find('\n', start)) != std::string::npos; start = end + 1) {
      if (auto line = FormatLogLine(std::string_view(partial).substr(start, end - start), timestamps_)) {
        out += *line + "\n";
      }
    }
    partial.erase(0, start);
    if (!out.empty()) on_output_(out);
    return any;
  };
  while (!stop_) {
    const bool was_running = running_();
    bool any = drain();
    struct stat now {};
    if (::stat(log_path_.c_str(), &now) == 0 && (fd < 0 || now.st_ino != inode)) {
      // Rotated (or created at last): the old file is finished, read on in the new one.
      drain();
      if (fd >= 0) ::close(fd);
      fd = ::open(log_path_.c_str(), O_RDONLY | O_CLOEXEC);
      inode = now.st_ino;
      partial.clear();
      continue;
    }
    if (!was_running && !any) break;  // exited before this pass, and everything is read
    if (!any) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (fd >= 0) ::close(fd);
  if (!stop_) on_end_();
  done_ = true;
}

}  // namespace skiff::node
