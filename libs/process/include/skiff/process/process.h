#pragma once

#include <string>
#include <utility>
#include <vector>

namespace skiff::process {

struct ProcessResult {
  int exit_code = -1;       // -1: it could not start, or a signal ended it
  std::string out;          // stdout
  std::string err;          // stderr
};

struct ProcessOptions {
  std::string input;                                        // written to stdin, then stdin is closed
  std::vector<std::pair<std::string, std::string>> env;     // set on top of this process's environment
};

// Runs `args` (argv[0] looked up in PATH) and waits for it; stdout and stderr are collected
// separately. Used where a protocol speaks over stdio (CNI plugins, iptables-restore).
ProcessResult RunProcess(const std::vector<std::string>& args, const ProcessOptions& options = {});

}  // namespace skiff::process
