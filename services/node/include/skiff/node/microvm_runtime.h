#pragma once

// The microVM sandbox runtime (issue 9): each group gets its own QEMU microvm (MicroVm) whose
// guest agent runs the group's containers with the shim and runc inside the guest. The host
// keeps the same layout as the runc runtime: the sandbox directory (bundles, logs, `state/`
// with started/exit records, volumes, hosts, resolv.conf) is the VM's virtio-fs share, so logs,
// exits and restarts read the same files. Images' root filesystems are bind-mounted into it.
#include <map>
#include <memory>
#include <mutex>

#include "skiff/node/microvm.h"
#include "skiff/node/sandbox_runtime.h"

namespace skiff::node {

struct MicroVmRuntimeOptions {
  std::string root;                 // sandboxes/<id>/ (each VM's share) and vms/<id>/ (its VMM's state)
  MicroVmOptions vm;                // qemu, virtiofsd, kernel, initramfs, accelerator; the rest per group
  v1::Seccomp seccomp;
  int64_t log_max_bytes = 10 * 1024 * 1024;
  int log_files = 3;
  std::string host_tag = "skiff";   // network namespace prefix and the VMMs' cgroup
  int guest_overhead_mb = 128;      // guest kernel, agent and page cache on top of the requests
  int min_guest_mb = 256;
  int vmm_overhead_mb = 128;        // QEMU and virtiofsd themselves, in the VMM's cgroup limit
};

// Mounts at `dir`, unless something is mounted there already (an earlier node process's), a
// tmpfs whose files take transparent huge pages (huge=within_size), for guest RAM
// (MicroVmOptions::memory_dir). False, with `error`, where it cannot.
bool MountGuestMemory(const std::string& dir, std::string* error);

class MicroVmRuntime : public SandboxRuntime {
 public:
  explicit MicroVmRuntime(MicroVmRuntimeOptions options);
  ~MicroVmRuntime() override;
  std::optional<std::string> CreateSandbox(const SandboxSpec& spec) override;
  std::optional<std::string> PrepareSandbox(const std::string& sandbox_id) override;  // boots the VM
  std::optional<std::pair<double, double>> UsageOf(const std::string& sandbox_id, const std::string& container) override;
  std::optional<ProbeResult> ProbeInside(const std::string& sandbox_id, const SocketProbeSpec& spec) override;
  std::optional<std::string> StartContainer(const std::string& sandbox_id, const ContainerLaunch& launch) override;
  bool IsRunning(const std::string& sandbox_id, const std::string& container) override;
  std::optional<ContainerExit> ExitOf(const std::string& sandbox_id, const std::string& container) override;
  std::optional<std::string> Signal(const std::string& sandbox_id, const std::string& container, int signal) override;
  std::optional<std::string> RemoveContainer(const std::string& sandbox_id, const std::string& container) override;
  std::optional<std::string> DeleteSandbox(const std::string& sandbox_id) override;
  std::string LogPath(const std::string& sandbox_id, const std::string& container) override;
  std::string VolumeDir(const std::string& sandbox_id) override;
  std::string NetworkNamespace(const std::string& sandbox_id) override;
  std::unique_ptr<ExecProcess> Exec(const std::string& sandbox_id, const std::string& container, const ExecSpec& spec,
                                    ExecCallbacks callbacks, std::string* error) override;

  // Whether this runtime holds the sandbox (its directory exists), e.g. after a node restart.
  bool Holds(const std::string& sandbox_id) const;
  // The VMM of a sandbox, while it runs (tests, metrics).
  pid_t VmmPid(const std::string& sandbox_id);
  // What could not be set up and costs start time (guest RAM's huge-page tmpfs, the
  // precompiled seccomp program): for the log.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  struct Sandbox {
    std::timed_mutex mutex;  // one VM boot or request sequence at a time per group
    SandboxSpec spec;
    std::shared_ptr<MicroVm> vm;
    std::string boot_id;  // of `vm`: a container started in an earlier boot is not in it
  };
  std::shared_ptr<Sandbox> Find(const std::string& sandbox_id, bool create);
  std::optional<std::string> EnsureVm(const std::string& sandbox_id, Sandbox& sandbox);
  std::string SandboxDir(const std::string& sandbox_id) const;
  std::string ContainerDir(const std::string& sandbox_id, const std::string& container) const;
  // A host path inside the sandbox directory as the guest sees it (under /sandbox).
  std::optional<std::string> GuestPath(const std::string& sandbox_id, const std::string& host_path) const;
  // The boot id of the sandbox's running VM; empty when none runs.
  std::string LiveBoot(const std::string& sandbox_id);

  MicroVmRuntimeOptions options_;
  std::vector<std::string> warnings_;
  std::string seccomp_bpf_base64_;  // the profile compiled once, for the guest's crun
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Sandbox>> sandboxes_;
};

// Sends each sandbox to the runtime its isolation asks for: MicroVM groups to the microVM
// runtime (when this node offers one), every other group and the standby pool to runc.
class IsolatingRuntime : public SandboxRuntime {
 public:
  IsolatingRuntime(SandboxRuntime& containers, MicroVmRuntime* microvms) : containers_(containers), microvms_(microvms) {}
  std::optional<std::string> CreateSandbox(const SandboxSpec& spec) override;
  std::optional<std::string> PrepareSandbox(const std::string& id) override { return For(id).PrepareSandbox(id); }
  std::optional<std::pair<double, double>> UsageOf(const std::string& id, const std::string& c) override {
    return For(id).UsageOf(id, c);
  }
  std::optional<ProbeResult> ProbeInside(const std::string& id, const SocketProbeSpec& spec) override {
    return For(id).ProbeInside(id, spec);
  }
  std::optional<std::string> StartContainer(const std::string& id, const ContainerLaunch& launch) override {
    return For(id).StartContainer(id, launch);
  }
  bool IsRunning(const std::string& id, const std::string& c) override { return For(id).IsRunning(id, c); }
  std::optional<ContainerExit> ExitOf(const std::string& id, const std::string& c) override { return For(id).ExitOf(id, c); }
  std::optional<std::string> Signal(const std::string& id, const std::string& c, int signal) override {
    return For(id).Signal(id, c, signal);
  }
  std::optional<std::string> RemoveContainer(const std::string& id, const std::string& c) override {
    return For(id).RemoveContainer(id, c);
  }
  std::optional<std::string> DeleteSandbox(const std::string& id) override { return For(id).DeleteSandbox(id); }
  std::optional<std::string> CreateSpare(const std::string& spare_id,
                                         const std::optional<confine::IdRange>& ids = std::nullopt) override {
    return containers_.CreateSpare(spare_id, ids);
  }
  std::optional<std::string> ClaimSpare(const std::string& spare_id, const SandboxSpec& spec) override;
  std::string LogPath(const std::string& id, const std::string& c) override { return For(id).LogPath(id, c); }
  std::string VolumeDir(const std::string& id) override { return For(id).VolumeDir(id); }
  std::string NetworkNamespace(const std::string& id) override { return For(id).NetworkNamespace(id); }
  std::unique_ptr<ExecProcess> Exec(const std::string& id, const std::string& c, const ExecSpec& spec,
                                    ExecCallbacks callbacks, std::string* error) override {
    return For(id).Exec(id, c, spec, std::move(callbacks), error);
  }

 private:
  SandboxRuntime& For(const std::string& id) {
    return microvms_ && microvms_->Holds(id) ? static_cast<SandboxRuntime&>(*microvms_) : containers_;
  }
  SandboxRuntime& containers_;
  MicroVmRuntime* microvms_;
};

}  // namespace skiff::node
