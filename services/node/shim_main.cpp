// skiff-shim: supervises one container for skiff-node (see shim.h). Started by the node.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <unistd.h>

#include "skiff/node/shim.h"

int main(int argc, char** argv) {
  skiff::node::ShimOptions options;
  bool detach = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--runc") options.runc = value;
    else if (flag == "--runc-root") options.runc_root = value;
    else if (flag == "--id") options.container_id = value;
    else if (flag == "--bundle") options.bundle = value;
    else if (flag == "--state") options.state_dir = value;
    else if (flag == "--log") options.log_path = value;
    else if (flag == "--log-max-bytes") options.log_max_bytes = std::atoll(value.c_str());
    else if (flag == "--log-files") options.log_files = std::atoi(value.c_str());
    else if (flag == "--memory-cgroup") options.memory_cgroup = value;
    else if (flag == "--detach") detach = value == "1";
    else {
      std::cerr << "skiff-shim: unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (options.container_id.empty() || options.bundle.empty() || options.state_dir.empty() || options.log_path.empty()) {
    std::cerr << "usage: skiff-shim --id ID --bundle DIR --state DIR --log FILE [--runc PATH] [--runc-root DIR]\n"
                 "                  [--log-max-bytes N] [--log-files N] [--memory-cgroup DIR] [--detach 1]\n";
    return 2;
  }
  if (detach) {
    // The node waits only for this first process: the shim goes on in a child that nobody
    // waits for (init or a subreaper adopts it), so it outlives the node.
    pid_t child = ::fork();
    if (child < 0) return 1;
    if (child > 0) ::_exit(0);
  }
  return skiff::node::RunShim(options);
}
