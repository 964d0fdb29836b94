#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace skiff::oci {

// What an image's config says about the process to run.
struct ImageProcessDefaults {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // KEY=VALUE
  std::string working_dir;
  std::string user;
};

struct Process {
  std::vector<std::string> args;
  std::vector<std::string> env;  // KEY=VALUE, image order first, then the container's new names
  std::string cwd;
  std::string user;  // as the image says: uid, uid:gid, or a name to resolve in the rootfs
};

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Merges the image's defaults with the container's `command` and environment as ACI does (and
// Kubernetes' `command`): a command replaces both ENTRYPOINT and CMD; otherwise ENTRYPOINT+CMD
// run. Container variables override the image's of the same name. nullopt when there is
// nothing to run (no command, no entrypoint, no cmd).
std::optional<Process> MergeProcess(const ImageProcessDefaults& image, const std::vector<std::string>& command,
                                    const std::vector<std::pair<std::string, std::string>>& env);

}  // namespace skiff::oci
