#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace skiff::node {

struct Usage {
  double cpu_seconds = 0;
  double memory_bytes = 0;
};

// A container's usage from cgroup v1 (`cgroup_root` is /sys/fs/cgroup; tests pass a fake tree).
std::optional<Usage> ReadUsage(const std::string& cgroup_root, const std::string& cgroup_path);

// A container's log as ACI's logs API returns it: the last `tail` lines (0: all that is kept,
// rotated files included, oldest first), each line's text, prefixed with its RFC 3339 time when
// `timestamps` is set. `log_path` is the live file; rotated copies are log_path.1, .2, …
// `live_limit` >= 0 reads only that many bytes of the live file.
std::string ReadLogs(const std::string& log_path, int tail, bool timestamps, int64_t live_limit = -1);

// One shim log line ("<time> <stream> <text>") as the logs API shows it; nullopt when malformed.
std::optional<std::string> FormatLogLine(std::string_view line, bool timestamps);

// Follows a container's log as `tail -F` does: first the last `tail` lines, then every line as
// it is written, across rotations. Once `running()` says the container has exited and nothing
// is left to read, calls `on_end` and stops. Runs on its own thread; destroying it stops it.
class LogFollower {
 public:
  LogFollower(std::string log_path, int tail, bool timestamps, std::function<bool()> running,
              std::function<void(std::string_view)> on_output, std::function<void()> on_end);
  ~LogFollower();
  LogFollower(const LogFollower&) = delete;
  LogFollower& operator=(const LogFollower&) = delete;
  bool Done() const { return done_; }

 private:
  void Run();
  std::string log_path_;
  int tail_;
  bool timestamps_;
  std::function<bool()> running_;
  std::function<void(std::string_view)> on_output_;
  std::function<void()> on_end_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace skiff::node
