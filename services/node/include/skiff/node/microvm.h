#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "skiff/node/socket_probe.h"
#include "skiff/node/exec_process.h"
#include "skiff/node/guest_channel.h"

namespace skiff::node {

namespace v1 {
class GuestRequest;
class GuestMessage;
class GuestReply;
}

struct MicroVmOptions {
  std::string qemu = "qemu-system-x86_64";
  std::string virtiofsd = "/usr/lib/qemu/virtiofsd";
  std::string kernel;      // e.g. /boot/vmlinuz-6.1.0-56-cloud-amd64
  std::string initramfs;   // build/…/guest-initramfs.cpio (the agent and runc)
  std::string share_dir;   // the sandbox's directory, /sandbox in the guest (virtio-fs)
  std::string state_dir;   // sockets, console log, pids
  int vcpus = 1;
  int memory_mb = 256;
  // Where guest RAM lives as a file (a tmpfs from MountGuestMemory, microvm_runtime.h): shared with virtiofsd and
  // backed by huge pages. Empty: a memfd, in 4 KiB pages, whose faults under TCG make a boot
  // ~0.3 s slower (the host's shmem_enabled is usually `never`).
  std::string memory_dir;
  // KVM when it boots the guest kernel (KvmBootsGuests), else TCG (software emulation: slow, but
  // it works everywhere).
  std::optional<bool> kvm;
  std::chrono::milliseconds boot_timeout{60000};
  // The guest's NIC: a tap device (an open fd, handed to QEMU) whose other side the host wires
  // to the group's interface, with the MAC, address and route the group has on the host.
  struct Nic {
    int tap_fd = -1;
    std::string mac;
    std::string address;  // CIDR, e.g. 10.252.0.5/24
    std::string gateway;  // empty: no default route
    int mtu = 1500;
  };
  std::optional<Nic> nic;
};

struct MicroVmEvents {
  // A container's shim ended (its exit record is in the share already).
  std::function<void(const std::string& container, int exit_code, int64_t finished_at_ms)> on_exit;
  // The VMM (or its channel) went away: every container in it is gone.
  std::function<void(const std::string& reason)> on_vm_exit;
};

// The host's TSC rate in kHz, for a TCG guest's `tsc_early_khz=`: under TCG the guest cannot
// calibrate its clock reliably (its boot hangs now and then), so it is told the rate.
std::string HostTscKhz();

// Whether KVM runs `kernel` under `qemu`: /dev/kvm opens and a probe boot of the kernel reaches
// its root-less panic within 10 s (scratch_dir holds its console). Asked once per process.
bool KvmBootsGuests(const std::string& qemu, const std::string& kernel, const std::string& scratch_dir);

// One microVM: QEMU `-M microvm` with the Debian cloud kernel and Skiff's initramfs, the
// sandbox directory shared by virtiofsd, and the guest agent on a virtio-serial port. Requests
// are synchronous (one at a time); output and exits arrive on the reader thread.
class MicroVm : public std::enable_shared_from_this<MicroVm> {
 public:
  // Boots and waits for the agent's hello. nullptr and `error` when it cannot.
  // Shared: exec sessions hold the VM they run in.
  static std::shared_ptr<MicroVm> Boot(MicroVmOptions options, MicroVmEvents events, std::string* error);
  // Takes over a VM a previous node process booted with the same state_dir (its VMM and
  // virtiofsd run on when the node exits): reconnects to its agent. nullptr and `error` when the
  // VMM is gone (its leftovers are stopped) or the agent does not answer.
  static std::shared_ptr<MicroVm> Adopt(MicroVmOptions options, MicroVmEvents events, std::string* error);
  // Lets go of the VM without stopping it (the node is exiting). Idempotent; no Shutdown after.
  void Detach();
  ~MicroVm();
  // Powers off (asks the agent, then kills the VMM) and stops virtiofsd; requests fail from then
  // on and running exec sessions end. Idempotent.
  void Shutdown();

  const std::string& kernel_release() const { return kernel_release_; }
  pid_t vmm_pid() const { return qemu_pid_; }
  pid_t virtiofsd_pid() const { return virtiofsd_pid_; }
  // The VMM or its channel went away (the reader saw the end).
  bool gone() const {
    std::lock_guard lock(mutex_);
    return gone_;
  }
  bool kvm() const { return kvm_; }
  // Starts the container whose OCI bundle is `bundle` under the guest's shim, which writes
  // `state_dir`/{started,exit} and the log at `log_path` (guest paths under /sandbox, so the
  // host reads them in the share). Returns once it started (or failed to: then `exit` exists).
  struct Start {
    std::string name, bundle, state_dir, log_path;
    int64_t log_max_bytes = 10 * 1024 * 1024;
    int log_files = 3;
  };
  std::optional<std::string> StartContainer(const Start& start);
  std::optional<std::string> Signal(const std::string& name, int signal);
  // `runc exec` in the guest, streamed over the agent's channel. `guest_process_file`, when set,
  // is the process runc runs (WriteExecProcess, a guest path in the share), which the agent
  // removes when the session ends; else the container's own process runs `spec.command`.
  std::unique_ptr<ExecProcess> Exec(const std::string& name, const ExecSpec& spec,
                                    const std::string& guest_process_file, ExecCallbacks callbacks,
                                    std::string* error);
  bool Alive();
  // A container's cpu seconds and memory bytes, from its cgroup in the guest.
  std::optional<std::pair<double, double>> Usage(const std::string& name, const std::string& cgroup_path);
  // A tcpSocket/httpGet probe of the guest's 127.0.0.1, run by the agent.
  ProbeResult Probe(const SocketProbeSpec& spec);

 private:
  MicroVm(MicroVmOptions options, MicroVmEvents events) : options_(std::move(options)), events_(std::move(events)) {}
  struct ExecState;
  class RemoteExec;
  std::optional<std::string> Connect(const std::string& agent_socket);
  void ReadLoop();
  uint64_t NextId();
  void DeliverExec(const v1::GuestMessage& message);
  std::optional<std::string> Call(v1::GuestRequest& request, v1::GuestReply* reply = nullptr);

  MicroVmOptions options_;
  MicroVmEvents events_;
  pid_t qemu_pid_ = -1, virtiofsd_pid_ = -1;
  bool kvm_ = false;
  int channel_ = -1;
  std::thread reader_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string kernel_release_;
  bool ready_ = false, gone_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::shared_ptr<v1::GuestReply>> replies_;
  std::map<uint64_t, std::shared_ptr<ExecState>> execs_;
  std::mutex write_mutex_;
  std::mutex shutdown_mutex_;
  bool shut_down_ = false;
};

}  // namespace skiff::node
