#pragma once

#include <cstdint>
#include <string>

namespace skiff::node {

// The per-container shim (the `skiff-shim` program), as containerd has one: it outlives the node
// process, so containers keep running and logging while the node restarts. It runs
// `runc run --detach` for one container with stdout/stderr on pipes, reaps the container's init
// as a child subreaper, writes each line with an RFC 3339
// timestamp and stream name to a size-capped, rotating log file, and when the container exits
// records the exit code, finish time and whether the kernel OOM-killed it in <state>/exit.
struct ShimOptions {
  std::string runc = "runc";
  std::string runc_root;      // --root for runc state
  std::string container_id;
  std::string bundle;
  std::string state_dir;      // shim.pid, started, exit
  std::string log_path;
  int64_t log_max_bytes = 10 * 1024 * 1024;
  int log_files = 3;          // rotated copies kept: log.1 … log.N
  std::string memory_cgroup;  // /sys/fs/cgroup/memory/<cgroupsPath>, read for OOM kills
  // `runc run --no-pivot`: in a microVM guest the root is the initramfs, which pivot_root cannot
  // leave (the VM is the boundary there).
  bool no_pivot = false;
  // Where the shim's parent waits (in a guest: the agent): one byte once `started` is written,
  // so it need not poll the shared directory for it. Closed either way. -1: none.
  int started_fd = -1;
};

// Runs in the calling process until the container exits; returns the exit code it recorded.
int RunShim(const ShimOptions& options);

// One log line as written: "<time> <stdout|stderr> <text>".
std::string FormatLogLine(const std::string& timestamp, const std::string& stream, const std::string& text);

// Appends to a log file and rotates it when it passes its size cap.
class RotatingLog {
 public:
  RotatingLog(std::string path, int64_t max_bytes, int files);
  ~RotatingLog();
  void Write(const std::string& line);

 private:
  void Rotate();
  std::string path_;
  int64_t max_bytes_;
  int files_;
  int fd_ = -1;
  int64_t size_ = 0;
};

std::string NowRfc3339();

}  // namespace skiff::node
