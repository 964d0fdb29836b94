#pragma once

#include <optional>
#include <string>

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
std::string ReadLogs(const std::string& log_path, int tail, bool timestamps);

}  // namespace skiff::node
