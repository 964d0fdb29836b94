#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skiff/node/socket_probe.h"
#include "skiff/node/bundle.h"
#include "skiff/confine/idmap.h"
#include "skiff/node/exec_process.h"

namespace skiff::node {

struct SandboxSpec {
  std::string id;          // group id
  std::string hostname;    // the group's name
  std::vector<std::string> nameservers{"127.0.0.53"};
  std::vector<std::string> search_domains;
  std::vector<std::string> dns_options;
  std::string address;     // the group's own address, for /etc/hosts (empty: loopback only)
  // "MicroVM": the group runs in its own microVM; else in runc containers on the host.
  std::string isolation;
  // runc groups: the user namespace range of the group. Its containers share one user namespace,
  // which owns the group's network namespace (so its root may mount sysfs and runc exec can join).
  std::optional<confine::IdRange> ids;
  double cpu = 0;          // the group's summed requests: a microVM's vCPUs and memory
  double memory_gb = 0;
};

struct ContainerExit {
  int exit_code = 0;
  std::string finished_at;  // RFC 3339
  bool oom_killed = false;
  std::string reason;       // set when the runtime, not the container, ended it (e.g. VmmExited)
  std::string message;
};

// A group = one sandbox holding its containers (shared network namespace, volumes, lifecycle),
// as an ACI container group or a Kubernetes pod. RuncRuntime implements it with runc; the
// microVM runtime (issue 9) will implement it with a VM per sandbox. Errors are returned as text.
class SandboxRuntime {
 public:
  virtual ~SandboxRuntime() = default;
  // Idempotent: called again once the network is known, it rewrites hosts and resolv.conf.
  virtual std::optional<std::string> CreateSandbox(const SandboxSpec& spec) = 0;
  // Starts the container and returns at once; it runs on after this process exits.
  virtual std::optional<std::string> StartContainer(const std::string& sandbox_id, const ContainerLaunch& launch) = 0;
  virtual bool IsRunning(const std::string& sandbox_id, const std::string& container) = 0;
  // nullopt while the container runs (or never ran).
  virtual std::optional<ContainerExit> ExitOf(const std::string& sandbox_id, const std::string& container) = 0;
  virtual std::optional<std::string> Signal(const std::string& sandbox_id, const std::string& container, int signal) = 0;
  // Forgets an exited container's run state (its log stays until the sandbox is deleted).
  virtual std::optional<std::string> RemoveContainer(const std::string& sandbox_id, const std::string& container) = 0;
  virtual std::optional<std::string> DeleteSandbox(const std::string& sandbox_id) = 0;
  // Standby pool: a spare sandbox made ahead of time (directories, network namespace) becomes
  // the sandbox `spec.id`, so a group starts without that set-up. Runtimes without spares say
  // so with an error and the caller creates the sandbox as usual.
  // With `ids`, the spare's namespaces are made for that range; a group claiming it must hold
  // the same range (ClaimSpare refuses otherwise).
  virtual std::optional<std::string> CreateSpare(const std::string& spare_id,
                                                 const std::optional<confine::IdRange>& ids = std::nullopt) {
    return "this runtime keeps no spare sandboxes (" + spare_id + (ids ? ", ids" : "") + ")";
  }
  virtual std::optional<std::string> ClaimSpare(const std::string& spare_id, const SandboxSpec& spec) {
    return "this runtime keeps no spare sandboxes (" + spare_id + ", " + spec.id + ")";
  }
  // Heavy set-up of a created sandbox (a microVM's boot), called once its network is attached
  // and outside the node's lock, so nothing else waits for it.
  virtual std::optional<std::string> PrepareSandbox(const std::string& /*sandbox_id*/) { return std::nullopt; }
  // A running container's cpu seconds and memory bytes when the runtime measures them itself (a
  // microVM's guest); nullopt: the node reads the container's cgroup on the host.
  virtual std::optional<std::pair<double, double>> UsageOf(const std::string& /*sandbox_id*/,
                                                           const std::string& /*container*/) {
    return std::nullopt;
  }
  // A tcpSocket/httpGet probe run where the containers' localhost is, when that is not the
  // group's network namespace on this host (a microVM's guest); nullopt: probe the namespace.
  virtual std::optional<ProbeResult> ProbeInside(const std::string& /*sandbox_id*/, const SocketProbeSpec& /*spec*/) {
    return std::nullopt;
  }
  virtual std::string LogPath(const std::string& sandbox_id, const std::string& container) = 0;
  // Directory for the sandbox's volumes (emptyDir, secrets).
  virtual std::string VolumeDir(const std::string& sandbox_id) = 0;
  virtual std::string NetworkNamespace(const std::string& sandbox_id) = 0;
  // Runs a command in a running container with its user, environment and limits. nullptr and
  // `error` set when it could not start.
  virtual std::unique_ptr<ExecProcess> Exec(const std::string& sandbox_id, const std::string& container,
                                            const ExecSpec& spec, ExecCallbacks callbacks, std::string* error) = 0;
};

struct RuncRuntimeOptions {
  std::string root;           // node state: sandboxes/<id>/…, runc/ (runc --root)
  std::string runc = "runc";
  std::string shim_binary;    // skiff-shim, one per container
  v1::Seccomp seccomp;
  int64_t log_max_bytes = 10 * 1024 * 1024;
  int log_files = 3;
  // Names the node's host-wide objects (cgroup parent, network namespace prefix), so two nodes
  // can share one host (tests, simulated clusters) without touching each other's groups.
  std::string host_tag = "skiff";
};

class RuncRuntime : public SandboxRuntime {
 public:
  explicit RuncRuntime(RuncRuntimeOptions options);
  std::optional<std::string> CreateSandbox(const SandboxSpec& spec) override;
  std::optional<std::string> StartContainer(const std::string& sandbox_id, const ContainerLaunch& launch) override;
  bool IsRunning(const std::string& sandbox_id, const std::string& container) override;
  std::optional<ContainerExit> ExitOf(const std::string& sandbox_id, const std::string& container) override;
  std::optional<std::string> Signal(const std::string& sandbox_id, const std::string& container, int signal) override;
  std::optional<std::string> RemoveContainer(const std::string& sandbox_id, const std::string& container) override;
  std::optional<std::string> DeleteSandbox(const std::string& sandbox_id) override;
  std::optional<std::string> CreateSpare(const std::string& spare_id,
                                         const std::optional<confine::IdRange>& ids = std::nullopt) override;
  std::optional<std::string> ClaimSpare(const std::string& spare_id, const SandboxSpec& spec) override;
  std::string LogPath(const std::string& sandbox_id, const std::string& container) override;
  std::string VolumeDir(const std::string& sandbox_id) override;
  std::string NetworkNamespace(const std::string& sandbox_id) override;
  std::unique_ptr<ExecProcess> Exec(const std::string& sandbox_id, const std::string& container, const ExecSpec& spec,
                                    ExecCallbacks callbacks, std::string* error) override;

  std::string RuncId(const std::string& sandbox_id, const std::string& container) const;

 private:
  std::string SandboxDir(const std::string& sandbox_id) const;
  std::string ContainerDir(const std::string& sandbox_id, const std::string& container) const;
  RuncRuntimeOptions options_;
};

// /etc/hosts and /etc/resolv.conf of a sandbox, in `dir`, from its spec.
void WriteHostsAndResolv(const std::string& dir, const SandboxSpec& spec);
// A sandbox's directory (containers/, volumes), network namespace, hosts and resolv.conf, as
// every runtime lays them out; idempotent.
std::optional<std::string> CreateSandboxLayout(const std::string& dir, const std::string& volume_dir,
                                               const std::string& netns, const SandboxSpec& spec);

// A named network namespace at `path` (e.g. /var/run/netns/skiff-<id>, so `ip netns` and CNI
// see it) with its loopback up; and its removal.
std::optional<std::string> CreateNetworkNamespace(const std::string& path);
// A user namespace mapping `range` and a network namespace it owns (its loopback up), pinned at
// the two paths; an error leaves neither behind.
std::optional<std::string> CreateNamespacesInRange(const confine::IdRange& range, const std::string& userns_path,
                                                   const std::string& netns_path);
std::optional<std::string> DeleteNetworkNamespace(const std::string& path);

// True when the process exists and is not a zombie.
bool ProcessAlive(pid_t pid);



}  // namespace skiff::node
