#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "skiff/confine/idmap.h"
#include "skiff/node/v1/runtime_spec.pb.h"
#include "skiff/oci/process.h"

namespace skiff::node {

// A volume prepared on the host, to bind into a container.
struct VolumeBind {
  std::string source;       // host path
  std::string destination;  // path in the container
  bool read_only = false;
};

// Everything needed to write one container's config.json. Sizes follow ACI: the limit when
// given, else the request.
struct ContainerLaunch {
  std::string group_id;
  std::string container_name;
  std::string cgroup_parent = "skiff";  // the node's host tag: two nodes may share a host
  std::string hostname;             // the group's name, as ACI sets it
  oci::Process process;             // image defaults merged with the container's command/env
  uint32_t uid = 0;
  uint32_t gid = 0;
  double cpu = 1.0;                 // cores
  double memory_gb = 1.0;
  int64_t pids_limit = 4096;
  std::string rootfs;               // overlayfs mount of the image
  std::string network_namespace;    // /var/run/netns/<sandbox>: shared by the group's containers (empty: in a microVM, the guest's)
  std::string hosts_file;           // host files bound at /etc/hosts and /etc/resolv.conf
  std::string resolv_file;
  std::vector<VolumeBind> volumes;
  bool terminal = false;
  uint64_t open_files_limit = 1048576;  // RLIMIT_NOFILE; the runtime caps it at its own hard limit
  // Set: the container runs in a user namespace mapping its ids 0.. to this host range (the
  // rootfs and volumes are shifted to match); unset: in the host's (microVM guests).
  std::optional<confine::IdRange> ids;
  std::string user_namespace;  // with ids: the group's user namespace (a pinned nsfs file) to join
};

constexpr int64_t kCpuPeriodMicros = 100000;

// The container's cgroup path: /<parent>/<group>/<container>, so the group's usage sums up.
std::string CgroupPath(const std::string& group_id, const std::string& container,
                       const std::string& parent = "skiff");

// Docker's default capability set: what a hardened container keeps.
const std::vector<std::string>& DefaultCapabilities();

// config.json for runc, hardened by default: no privileges, Docker's default capabilities,
// noNewPrivileges, `seccomp` (Docker-equivalent denylist from config), masked and read-only
// /proc and /sys paths, read-only cgroupfs, pids limit, no host devices, own PID/IPC/UTS/mount
// namespaces and the group's network namespace.
v1::RuntimeSpec BuildRuntimeSpec(const ContainerLaunch& launch, const v1::Seccomp& seccomp);

// Writes the bundle's config.json and process.json (its process alone, what an exec starts
// from), mode 0600: they hold opened secure values.
std::optional<std::string> WriteBundleConfig(const std::string& bundle_dir, const v1::RuntimeSpec& spec);

// Writes `path` (0600, never through a symlink) with the process an exec runs as `runc exec
// --process` takes it: the container's own process from the bundle's config.json (its user,
// capabilities, environment, limits) running `command`, with a terminal of rows x cols when asked.
// Given by file because runc's command line cannot size the terminal before the command starts,
// and a command that reads its size at once (`stty size`) would see 0 x 0.
std::optional<std::string> WriteExecProcess(const std::string& bundle_dir, const std::vector<std::string>& command,
                                            bool tty, uint16_t rows, uint16_t cols, const std::string& path);

// Resolves the image's `user` ("uid", "uid:gid", "name", "name:group") against the rootfs'
// /etc/passwd and /etc/group. nullopt when a name is unknown.
std::optional<std::pair<uint32_t, uint32_t>> ResolveUser(const std::string& user, const std::string& rootfs);

// Parses a seccomp profile (OCI JSON, as in infra/seccomp/default.json).
std::optional<v1::Seccomp> ParseSeccompProfile(const std::string& json);

}  // namespace skiff::node
