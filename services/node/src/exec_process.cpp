// `runc exec` for runc sandboxes.
#include <filesystem>

#include "skiff/crypto/crypto.h"
#include "skiff/node/bundle.h"
#include "skiff/node/sandbox_runtime.h"

namespace skiff::node {

std::unique_ptr<ExecProcess> RuncRuntime::Exec(const std::string& sandbox_id, const std::string& container,
                                               const ExecSpec& spec, ExecCallbacks callbacks, std::string* error) {
  if (spec.command.empty()) {
    *error = "no command given";
    return nullptr;
  }
  if (!IsRunning(sandbox_id, container)) {
    *error = "container " + container + " is not running";
    return nullptr;
  }
  const std::string exec_dir = ContainerDir(sandbox_id, container) + "/exec";
  std::filesystem::create_directories(exec_dir);
  const std::string session = exec_dir + "/" + crypto::NewUuid();
  const std::string pid_file = session + ".pid";
  std::vector<std::string> argv{options_.runc, "--root", options_.root + "/runc", "exec", "--pid-file", pid_file};
  if (!spec.tty) {  // pipes: the container's own process runs the command
    argv.push_back(RuncId(sandbox_id, container));
    argv.insert(argv.end(), spec.command.begin(), spec.command.end());
    return SpawnProcess(argv, spec, std::move(callbacks), error, pid_file);
  }
  // A terminal is sized before the command starts only through a process file (WriteExecProcess).
  const std::string process_file = session + ".process.json";
  if (auto failed = WriteExecProcess(ContainerDir(sandbox_id, container) + "/bundle", spec.command, spec.tty, spec.rows,
                                     spec.cols, process_file)) {
    *error = *failed;
    return nullptr;
  }
  argv.insert(argv.end(), {"--process", process_file, RuncId(sandbox_id, container)});
  return SpawnProcess(argv, spec, std::move(callbacks), error, pid_file, process_file);
}

}  // namespace skiff::node
