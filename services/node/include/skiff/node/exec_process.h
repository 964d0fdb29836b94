#pragma once

// Commands run inside containers (exec, exec probes), on whatever side runs them: the node for
// runc sandboxes, the guest agent for microVM ones.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace skiff::node {

struct ExecSpec {
  std::vector<std::string> command;
  bool tty = false;
  uint16_t rows = 24;
  uint16_t cols = 80;
};

// Output (stdout and stderr together) arrives on the process's own reader thread, then the exit
// code once; neither callback may destroy the ExecProcess.
struct ExecCallbacks {
  std::function<void(std::string_view)> on_output;
  std::function<void(int exit_code)> on_exit;
};

// A command running inside a container, as `docker exec`. Destroying it kills the command if it
// still runs and waits for its reader.
class ExecProcess {
 public:
  virtual ~ExecProcess() = default;
  virtual bool Write(std::string_view data) = 0;
  virtual void CloseInput() = 0;
  virtual void Resize(uint16_t rows, uint16_t cols) = 0;
  virtual void Kill() = 0;
  virtual bool Done() const = 0;
};

// Starts `argv` on the host with a pseudo-terminal (rows x cols; the child's controlling
// terminal, so a resize signals it) or with pipes; stdout and stderr go to on_output together.
// `kill_pid_file`, when set, names a file holding the pid to kill instead of the child's (runc
// exec writes the pid of the command it runs there); it and `scratch_file` (runc's --process file)
// are removed when the process object goes.
std::unique_ptr<ExecProcess> SpawnProcess(const std::vector<std::string>& argv, const ExecSpec& spec,
                                          ExecCallbacks callbacks, std::string* error,
                                          std::string kill_pid_file = {}, std::string scratch_file = {});

// Runs a program and waits; returns its exit status and combined output.
int RunProgram(const std::vector<std::string>& args, std::string* output = nullptr);

}  // namespace skiff::node
