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

#include "skiff/node/guest_channel.h"

namespace skiff::node {

struct MicroVmOptions {
  std::string qemu = "qemu-system-x86_64";
  std::string virtiofsd = "/usr/lib/qemu/virtiofsd";
  std::string kernel;      // e.g. /boot/vmlinuz-6.1.0-56-cloud-amd64
  std::string initramfs;   // build/…/guest-initramfs.cpio (the agent and runc)
  std::string share_dir;   // the sandbox's directory, /sandbox in the guest (virtio-fs)
  std::string state_dir;   // sockets, console log, pids
  int vcpus = 1;
  int memory_mb = 256;
  // KVM when /dev/kvm opens, else TCG (software emulation: slow, but it works everywhere).
  std::optional<bool> kvm;
  std::chrono::milliseconds boot_timeout{60000};
};

struct MicroVmEvents {
  std::function<void(const std::string& container, int stream, const std::string& data)> on_output;
  std::function<void(const std::string& container, int exit_code, int64_t finished_at_ms)> on_exit;
  // The VMM (or its channel) went away: every container in it is gone.
  std::function<void(const std::string& reason)> on_vm_exit;
};

// The host's TSC rate in kHz, for a TCG guest's `tsc_early_khz=`: under TCG the guest cannot
// calibrate its clock reliably (its boot hangs now and then), so it is told the rate.
std::string HostTscKhz();

// One microVM: QEMU `-M microvm` with the Debian cloud kernel and Skiff's initramfs, the
// sandbox directory shared by virtiofsd, and the guest agent on a virtio-serial port. Requests
// are synchronous (one at a time); output and exits arrive on the reader thread.
class MicroVm {
 public:
  // Boots and waits for the agent's hello. nullptr and `error` when it cannot.
  static std::unique_ptr<MicroVm> Boot(MicroVmOptions options, MicroVmEvents events, std::string* error);
  ~MicroVm();  // powers off (asks the agent, then kills the VMM) and stops virtiofsd

  const std::string& kernel_release() const { return kernel_release_; }
  pid_t vmm_pid() const { return qemu_pid_; }
  bool kvm() const { return kvm_; }
  // Starts the container whose OCI bundle is `bundle` (a guest path under /sandbox).
  std::optional<std::string> StartContainer(const std::string& name, const std::string& bundle);
  std::optional<std::string> Signal(const std::string& name, int signal);

 private:
  MicroVm(MicroVmOptions options, MicroVmEvents events) : options_(std::move(options)), events_(std::move(events)) {}
  void ReadLoop();
  std::optional<std::string> Call(const std::string& encoded_request, uint64_t id);

  MicroVmOptions options_;
  MicroVmEvents events_;
  pid_t qemu_pid_ = -1, virtiofsd_pid_ = -1;
  bool kvm_ = false;
  int channel_ = -1;
  std::thread reader_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string kernel_release_;
  bool ready_ = false, gone_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::string> replies_;
  std::mutex write_mutex_;
};

}  // namespace skiff::node
