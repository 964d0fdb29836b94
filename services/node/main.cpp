// skiff-node: runs container groups on this host. So far it provides the per-container shim
// (`skiff-node shim …`) that the runc sandbox runtime starts; the NATS service that takes
// groups from the scheduler is the rest of issue 4.
#include <CLI/CLI.hpp>

#include <iostream>

#include "skiff/node/shim.h"

int main(int argc, char** argv) {
  CLI::App app{"skiff-node: runs Skiff container groups on this host"};
  app.require_subcommand(1, 1);
  auto* shim = app.add_subcommand("shim", "Supervise one container (started by the node, not by hand)");
  skiff::node::ShimOptions options;
  shim->add_option("--runc", options.runc, "runc binary");
  shim->add_option("--runc-root", options.runc_root, "runc state root");
  shim->add_option("--id", options.container_id, "runc container id")->required();
  shim->add_option("--bundle", options.bundle, "OCI bundle directory")->required();
  shim->add_option("--state", options.state_dir, "shim state directory")->required();
  shim->add_option("--log", options.log_path, "container log file")->required();
  shim->add_option("--log-max-bytes", options.log_max_bytes, "rotate the log past this size");
  shim->add_option("--log-files", options.log_files, "rotated log files kept");
  shim->add_option("--memory-cgroup", options.memory_cgroup, "cgroup v1 memory directory, for OOM kills");
  CLI11_PARSE(app, argc, argv);
  if (shim->parsed()) return skiff::node::RunShim(options);
  return 0;
}
