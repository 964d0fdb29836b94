#include "skiff/node/microvm_runtime.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <thread>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <google/protobuf/util/json_util.h>

#include "skiff/confine/mounts.h"
#include "skiff/crypto/crypto.h"
#include "skiff/node/seccomp_bpf.h"
#include "skiff/node/shim.h"

namespace skiff::node {
namespace fs = std::filesystem;

namespace {

constexpr const char* kGuestShare = "/sandbox";

bool IsMicroVm(const SandboxSpec& spec) { return spec.isolation == "MicroVM"; }

// The VMM and virtiofsd of one group under <controller>/<tag>-microvm/<group> (cgroup v1) or
// <tag>-microvm/<group> (v2): what QEMU itself uses is limited and accounted like a container.
std::vector<std::string> VmmCgroups(const std::string& host_tag, const std::string& sandbox_id) {
  const std::string leaf = "/" + host_tag + "-microvm/" + sandbox_id;
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers")) return {"/sys/fs/cgroup" + leaf};
  return {"/sys/fs/cgroup/memory" + leaf, "/sys/fs/cgroup/cpu,cpuacct" + leaf};
}

void WriteControl(const std::string& path, const std::string& value) { std::ofstream(path) << value; }

void PlaceVmm(const std::string& host_tag, const std::string& sandbox_id, const std::vector<pid_t>& pids,
              int64_t memory_bytes, int vcpus) {
  for (const auto& dir : VmmCgroups(host_tag, sandbox_id)) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) continue;
    if (fs::exists(dir + "/memory.max")) {
      WriteControl(dir + "/memory.max", std::to_string(memory_bytes));
      WriteControl(dir + "/cpu.max", std::to_string(vcpus * kCpuPeriodMicros) + " " + std::to_string(kCpuPeriodMicros));
    } else if (fs::exists(dir + "/memory.limit_in_bytes")) {
      WriteControl(dir + "/memory.limit_in_bytes", std::to_string(memory_bytes));
    } else if (fs::exists(dir + "/cpu.cfs_quota_us")) {
      WriteControl(dir + "/cpu.cfs_period_us", std::to_string(kCpuPeriodMicros));
      WriteControl(dir + "/cpu.cfs_quota_us", std::to_string(vcpus * kCpuPeriodMicros));
    }
    for (pid_t pid : pids) {
      if (pid > 0) WriteControl(dir + "/cgroup.procs", std::to_string(pid));
    }
  }
}

void RemoveVmmCgroups(const std::string& host_tag, const std::string& sandbox_id) {
  for (const auto& dir : VmmCgroups(host_tag, sandbox_id)) ::rmdir(dir.c_str());
}

void Unmount(const std::string& path) {
  while (confine::IsMountPoint(path) && ::umount2(path.c_str(), MNT_DETACH) == 0) {
  }
}

}  // namespace

bool MountGuestMemory(const std::string& dir, std::string* error) {
  std::error_code ignored;
  fs::create_directories(dir, ignored);
  // As /proc/self/mountinfo spells it, so that a later node process finds its own mount.
  if (confine::IsMountPoint(fs::weakly_canonical(dir, ignored).string())) return true;
  if (::mount("skiff-guest-memory", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0700,size=100%,huge=within_size") != 0) {
    *error = "mount tmpfs on " + dir + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

namespace {

std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}


constexpr const char* kTap = "skiff-tap0";

std::vector<std::string> Words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

std::string After(const std::vector<std::string>& words, const std::string& key) {
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] == key) return words[i + 1];
  }
  return "";
}

// The interface the network service put in the group's namespace (its veth), with its MAC,
// MTU, address and default route: what the guest's NIC takes over. nullopt: loopback only.
std::optional<MicroVmOptions::Nic> GroupInterface(const std::string& netns, std::string* name) {
  std::string links;
  if (RunProgram({"ip", "-n", netns, "-o", "link", "show"}, &links) != 0) return std::nullopt;
  std::istringstream lines(links);
  for (std::string line; std::getline(lines, line);) {
    auto words = Words(line);
    if (words.size() < 2) continue;
    std::string ifname = words[1].substr(0, words[1].find_first_of(":@"));
    if (ifname == "lo" || ifname == kTap || After(words, "link/ether").empty()) continue;
    MicroVmOptions::Nic nic;
    nic.mac = After(words, "link/ether");
    nic.mtu = std::atoi(After(words, "mtu").c_str());
    if (nic.mtu <= 0) nic.mtu = 1500;
    std::string addresses, routes;
    RunProgram({"ip", "-n", netns, "-o", "-4", "addr", "show", "dev", ifname}, &addresses);
    nic.address = After(Words(addresses), "inet");
    if (nic.address.empty()) continue;
    RunProgram({"ip", "-n", netns, "-o", "-4", "route", "show", "default"}, &routes);
    nic.gateway = After(Words(routes), "via");
    *name = ifname;
    return nic;
  }
  return std::nullopt;
}

// A tap device made inside the namespace at `netns_path` (in a thread that joins it: namespaces
// are per thread), up, with virtio-net headers so offloaded packets pass whole. Its open fd;
// the device lives as long as that fd (QEMU's copy after the boot).
int OpenTap(const std::string& netns_path, std::string* error) {
  int tap = -1;
  std::thread worker([&] {
    if (!JoinNetworkNamespace(netns_path, error)) return;
    int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    ifreq request{};
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    std::strncpy(request.ifr_name, kTap, IFNAMSIZ - 1);
    if (fd < 0 || ::ioctl(fd, TUNSETIFF, &request) != 0) {
      *error = std::string("create the tap device: ") + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return;
    }
    int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq flags{};
    std::strncpy(flags.ifr_name, kTap, IFNAMSIZ - 1);
    if (sock >= 0 && ::ioctl(sock, SIOCGIFFLAGS, &flags) == 0) {
      flags.ifr_flags |= IFF_UP;
      ::ioctl(sock, SIOCSIFFLAGS, &flags);
    }
    if (sock >= 0) ::close(sock);
    tap = fd;
  });
  worker.join();
  return tap;
}

// Everything that arrives on the group's interface goes out of the tap to the guest, and back:
// the guest owns the group's address and MAC, the namespace only carries its frames.
std::optional<std::string> MirrorInterfaces(const std::string& netns, const std::string& ifname) {
  RunProgram({"tc", "-n", netns, "qdisc", "del", "dev", ifname, "ingress"});  // an earlier boot's
  std::string output;
  for (const auto& [from, to] : {std::pair<std::string, std::string>{ifname, kTap}, {kTap, ifname}}) {
    if (RunProgram({"tc", "-n", netns, "qdisc", "add", "dev", from, "ingress"}, &output) != 0 ||
        RunProgram({"tc", "-n", netns, "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match",
                    "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to},
                   &output) != 0) {
      return "tc in " + netns + ": " + output;
    }
  }
  return std::nullopt;
}

}  // namespace

MicroVmRuntime::MicroVmRuntime(MicroVmRuntimeOptions options) : options_(std::move(options)) {
  fs::create_directories(options_.root + "/sandboxes");
  fs::create_directories(options_.root + "/vms");
  if (options_.vm.memory_dir.empty()) {
    std::string error;
    if (MountGuestMemory(options_.root + "/memory", &error)) {
      options_.vm.memory_dir = options_.root + "/memory";
    } else {
      warnings_.push_back("guest memory in 4 KiB pages (memfd): " + error);
    }
  }
  if (options_.seccomp.ByteSizeLong() > 0) {
    std::string error;
    if (auto program = CompileSeccompBpf(options_.seccomp, &error)) {
      seccomp_bpf_base64_ = crypto::Base64Encode(*program);
    } else {
      warnings_.push_back("the guest compiles the seccomp profile at each container start: " + error);
    }
  }
  // VMs booted by the previous node process run on: take them over, so their groups keep
  // running (a VM that cannot be reached is stopped; its containers read as ended).
  for (const auto& entry : fs::directory_iterator(options_.root + "/vms")) {
    const std::string id = entry.path().filename().string();
    MicroVmOptions vm = options_.vm;
    vm.share_dir = SandboxDir(id);
    vm.state_dir = entry.path().string();
    std::string error;
    auto adopted = MicroVm::Adopt(vm, {}, &error);
    if (!adopted) continue;
    auto sandbox = std::make_shared<Sandbox>();
    sandbox->spec.id = id;
    sandbox->vm = std::move(adopted);
    sandbox->boot_id = ReadLine(vm.state_dir + "/boot.id");
    sandboxes_[id] = sandbox;
  }
}

MicroVmRuntime::~MicroVmRuntime() {
  // The node is exiting: the VMs (and their containers) run on for the next one, as runc
  // containers do under their shims.
  std::lock_guard lock(mutex_);
  for (auto& [id, sandbox] : sandboxes_) {
    std::lock_guard sandbox_lock(sandbox->mutex);
    if (sandbox->vm) sandbox->vm->Detach();
  }
}

std::string MicroVmRuntime::SandboxDir(const std::string& id) const { return options_.root + "/sandboxes/" + id; }
std::string MicroVmRuntime::ContainerDir(const std::string& id, const std::string& c) const {
  return SandboxDir(id) + "/containers/" + c;
}
std::string MicroVmRuntime::LogPath(const std::string& id, const std::string& c) { return ContainerDir(id, c) + "/log"; }
std::string MicroVmRuntime::VolumeDir(const std::string& id) { return SandboxDir(id) + "/volumes"; }
std::string MicroVmRuntime::NetworkNamespace(const std::string& id) {
  return "/var/run/netns/" + options_.host_tag + "-" + id;
}
bool MicroVmRuntime::Holds(const std::string& id) const { return fs::exists(SandboxDir(id)); }

std::optional<std::string> MicroVmRuntime::GuestPath(const std::string& id, const std::string& host_path) const {
  const std::string base = SandboxDir(id);
  if (host_path == base) return std::string(kGuestShare);
  if (host_path.rfind(base + "/", 0) != 0) return std::nullopt;
  return kGuestShare + host_path.substr(base.size());
}

std::shared_ptr<MicroVmRuntime::Sandbox> MicroVmRuntime::Find(const std::string& id, bool create) {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it != sandboxes_.end()) return it->second;
  if (!create && !Holds(id)) return nullptr;
  auto sandbox = std::make_shared<Sandbox>();
  sandbox->spec.id = id;
  sandboxes_[id] = sandbox;
  return sandbox;
}

std::optional<std::string> MicroVmRuntime::CreateSandbox(const SandboxSpec& spec) {
  auto sandbox = Find(spec.id, true);
  std::lock_guard lock(sandbox->mutex);
  sandbox->spec = spec;
  return CreateSandboxLayout(SandboxDir(spec.id), VolumeDir(spec.id), NetworkNamespace(spec.id), spec);
}

std::optional<std::string> MicroVmRuntime::EnsureVm(const std::string& id, Sandbox& sandbox) {
  if (sandbox.vm && !sandbox.vm->gone()) return std::nullopt;
  if (sandbox.vm) sandbox.vm->Shutdown();  // a VMM that died: its leftovers (virtiofsd) go before a new boot
  sandbox.vm.reset();
  MicroVmOptions vm = options_.vm;
  vm.share_dir = SandboxDir(id);
  vm.state_dir = options_.root + "/vms/" + id;
  vm.vcpus = std::max(1, static_cast<int>(std::ceil(sandbox.spec.cpu - 1e-9)));
  vm.memory_mb = std::max(options_.min_guest_mb,
                          static_cast<int>(std::ceil(sandbox.spec.memory_gb * 1024)) + options_.guest_overhead_mb);
  // The group's network, if the network service gave it one: the guest takes it over.
  const std::string netns_path = NetworkNamespace(id), netns = fs::path(netns_path).filename().string();
  std::string ifname, error;
  if (auto nic = GroupInterface(netns, &ifname)) {
    nic->tap_fd = OpenTap(netns_path, &error);
    if (nic->tap_fd < 0) return "the microVM's network: " + error;
    if (auto failed = MirrorInterfaces(netns, ifname)) {
      ::close(nic->tap_fd);
      return "the microVM's network: " + *failed;
    }
    vm.nic = nic;
  }
  sandbox.vm = MicroVm::Boot(vm, {}, &error);
  if (vm.nic) ::close(vm.nic->tap_fd);  // QEMU has its own copy
  if (!sandbox.vm) return "the microVM did not boot: " + error;
  sandbox.boot_id = crypto::NewUuid();
  std::ofstream(vm.state_dir + "/boot.id") << sandbox.boot_id << "\n";
  PlaceVmm(options_.host_tag, id, {sandbox.vm->vmm_pid(), sandbox.vm->virtiofsd_pid()},
           (static_cast<int64_t>(vm.memory_mb) + options_.vmm_overhead_mb) * 1024 * 1024, vm.vcpus);
  return std::nullopt;
}

std::optional<std::string> MicroVmRuntime::StartContainer(const std::string& sandbox_id, const ContainerLaunch& input) {
  auto sandbox = Find(sandbox_id, false);
  if (!sandbox) return "no sandbox " + sandbox_id;
  std::lock_guard lock(sandbox->mutex);
  const std::string dir = ContainerDir(sandbox_id, input.container_name);
  const std::string state = dir + "/state", rootfs = dir + "/rootfs";
  fs::remove_all(state);  // a restart starts from a clean run state; the log continues
  fs::create_directories(dir + "/bundle");
  fs::create_directories(state);
  fs::create_directories(rootfs);
  // The image's root filesystem (the image cache's overlay mount) appears in the share.
  if (!confine::IsMountPoint(rootfs) && ::mount(input.rootfs.c_str(), rootfs.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return "bind " + input.rootfs + " into the sandbox: " + std::strerror(errno);
  }
  ContainerLaunch launch = input;
  launch.network_namespace.clear();  // the guest's: the VM is the group's boundary
  launch.cgroup_parent = options_.host_tag;
  launch.rootfs = *GuestPath(sandbox_id, rootfs);
  launch.hosts_file = *GuestPath(sandbox_id, launch.hosts_file.empty() ? SandboxDir(sandbox_id) + "/hosts" : launch.hosts_file);
  launch.resolv_file =
      *GuestPath(sandbox_id, launch.resolv_file.empty() ? SandboxDir(sandbox_id) + "/resolv.conf" : launch.resolv_file);
  for (auto& volume : launch.volumes) {
    auto guest = GuestPath(sandbox_id, volume.source);
    if (!guest) return "the volume at " + volume.source + " is outside the microVM's share";
    volume.source = *guest;
  }
  v1::RuntimeSpec spec = BuildRuntimeSpec(launch, options_.seccomp);
  if (!seccomp_bpf_base64_.empty()) (*spec.mutable_annotations())[kSeccompBpfAnnotation] = seccomp_bpf_base64_;
  if (auto error = WriteBundleConfig(dir + "/bundle", spec)) return error;

  if (auto error = EnsureVm(sandbox_id, *sandbox)) return error;
  std::ofstream(state + "/boot.id") << sandbox->boot_id << "\n";  // the VM this run is in
  MicroVm::Start start;
  start.name = input.container_name;
  start.bundle = *GuestPath(sandbox_id, dir + "/bundle");
  start.state_dir = *GuestPath(sandbox_id, state);
  start.log_path = *GuestPath(sandbox_id, dir + "/log");
  start.log_max_bytes = options_.log_max_bytes;
  start.log_files = options_.log_files;
  return sandbox->vm->StartContainer(start);
}

std::string MicroVmRuntime::LiveBoot(const std::string& sandbox_id) {
  auto sandbox = Find(sandbox_id, false);
  if (!sandbox) return "";
  std::lock_guard lock(sandbox->mutex);
  return sandbox->vm && !sandbox->vm->gone() ? sandbox->boot_id : "";
}

std::optional<ProbeResult> MicroVmRuntime::ProbeInside(const std::string& sandbox_id, const SocketProbeSpec& spec) {
  auto sandbox = Find(sandbox_id, false);
  if (!sandbox) return ProbeResult{false, "no sandbox " + sandbox_id};
  std::shared_ptr<MicroVm> vm;
  {
    // A boot or another container's start holds the lock: wait for it as long as the probe may.
    std::unique_lock lock(sandbox->mutex, std::defer_lock);
    if (!lock.try_lock_for(spec.timeout)) return ProbeResult{false, "the microVM is busy booting or starting"};
    vm = sandbox->vm;
  }
  if (!vm || vm->gone()) return ProbeResult{false, "the microVM is not running"};
  return vm->Probe(spec);
}

std::optional<std::pair<double, double>> MicroVmRuntime::UsageOf(const std::string& sandbox_id,
                                                                 const std::string& container) {
  auto sandbox = Find(sandbox_id, false);
  if (!sandbox) return std::nullopt;
  std::shared_ptr<MicroVm> vm;
  {
    std::unique_lock lock(sandbox->mutex, std::try_to_lock);  // booting: no sample this time
    if (!lock.owns_lock()) return std::nullopt;
    vm = sandbox->vm;
  }
  if (!vm || vm->gone()) return std::nullopt;
  return vm->Usage(container, CgroupPath(sandbox_id, container, options_.host_tag));
}

std::optional<std::string> MicroVmRuntime::PrepareSandbox(const std::string& sandbox_id) {
  auto sandbox = Find(sandbox_id, false);
  if (!sandbox) return "no sandbox " + sandbox_id;
  std::lock_guard lock(sandbox->mutex);
  return EnsureVm(sandbox_id, *sandbox);
}

pid_t MicroVmRuntime::VmmPid(const std::string& sandbox_id) {
  auto sandbox = Find(sandbox_id, false);
  if (!sandbox) return -1;
  std::lock_guard lock(sandbox->mutex);
  return sandbox->vm && !sandbox->vm->gone() ? sandbox->vm->vmm_pid() : -1;
}

bool MicroVmRuntime::IsRunning(const std::string& sandbox_id, const std::string& container) {
  const std::string state = ContainerDir(sandbox_id, container) + "/state";
  if (!fs::exists(state + "/started") || fs::exists(state + "/exit")) return false;
  const std::string live = LiveBoot(sandbox_id);
  return !live.empty() && live == ReadLine(state + "/boot.id");
}

std::optional<ContainerExit> MicroVmRuntime::ExitOf(const std::string& sandbox_id, const std::string& container) {
  const std::string state = ContainerDir(sandbox_id, container) + "/state";
  if (!fs::exists(state + "/exit")) {
    if (!fs::exists(state + "/started")) return std::nullopt;
    const std::string live = LiveBoot(sandbox_id);
    if (!live.empty() && live == ReadLine(state + "/boot.id")) return std::nullopt;
    // Started, no exit recorded, and the VM it ran in is gone (a new one may run since): the
    // VMM died (or was killed) under it.
    std::ofstream(state + "/exit.tmp") << 137 << " " << NowRfc3339() << " - VmmExited\n";
    fs::rename(state + "/exit.tmp", state + "/exit");
  }
  std::istringstream in(ReadLine(state + "/exit"));
  ContainerExit exit;
  std::string oom;
  if (!(in >> exit.exit_code >> exit.finished_at >> oom)) return std::nullopt;
  exit.oom_killed = oom == "oom";
  if (in >> exit.reason && exit.reason == "VmmExited") {
    exit.message = "the microVM of its group stopped (its VMM exited), so the container ended with it";
  }
  return exit;
}

std::optional<std::string> MicroVmRuntime::Signal(const std::string& sandbox_id, const std::string& container,
                                                  int signal) {
  auto sandbox = Find(sandbox_id, false);
  if (!sandbox) return "no sandbox " + sandbox_id;
  std::lock_guard lock(sandbox->mutex);
  if (!sandbox->vm || sandbox->vm->gone()) return "the microVM is not running";
  return sandbox->vm->Signal(container, signal);
}

std::optional<std::string> MicroVmRuntime::RemoveContainer(const std::string& sandbox_id, const std::string& container) {
  if (IsRunning(sandbox_id, container)) return "the container is still running";
  const std::string dir = ContainerDir(sandbox_id, container);
  std::error_code ec;
  fs::remove_all(dir + "/state", ec);
  fs::remove_all(dir + "/bundle", ec);
  Unmount(dir + "/rootfs");
  fs::remove(dir + "/rootfs", ec);
  return std::nullopt;
}

std::optional<std::string> MicroVmRuntime::DeleteSandbox(const std::string& sandbox_id) {
  auto sandbox = Find(sandbox_id, false);
  if (sandbox) {
    std::lock_guard lock(sandbox->mutex);
    if (sandbox->vm) sandbox->vm->Shutdown();  // every container in it ends, exec sessions too
    sandbox->vm.reset();
  }
  const std::string dir = SandboxDir(sandbox_id);
  if (fs::exists(dir + "/containers")) {
    for (const auto& entry : fs::directory_iterator(dir + "/containers")) Unmount(entry.path().string() + "/rootfs");
  }
  if (fs::exists(NetworkNamespace(sandbox_id))) DeleteNetworkNamespace(NetworkNamespace(sandbox_id));
  RemoveVmmCgroups(options_.host_tag, sandbox_id);
  std::error_code ec;
  if (fs::exists(dir)) confine::UnmountBeneath(fs::canonical(dir, ec).string());  // volume tmpfs
  fs::remove_all(options_.root + "/vms/" + sandbox_id, ec);
  fs::remove_all(dir, ec);
  {
    std::lock_guard lock(mutex_);
    sandboxes_.erase(sandbox_id);
  }
  if (ec) return "remove " + dir + ": " + ec.message();
  return std::nullopt;
}

std::unique_ptr<ExecProcess> MicroVmRuntime::Exec(const std::string& sandbox_id, const std::string& container,
                                                  const ExecSpec& spec, ExecCallbacks callbacks, std::string* error) {
  if (spec.command.empty()) {
    *error = "no command given";
    return nullptr;
  }
  if (!IsRunning(sandbox_id, container)) {
    *error = "container " + container + " is not running";
    return nullptr;
  }
  auto sandbox = Find(sandbox_id, false);
  std::shared_ptr<MicroVm> vm;
  {
    std::lock_guard lock(sandbox->mutex);
    vm = sandbox->vm;
  }
  if (!vm) {
    *error = "the microVM is not running";
    return nullptr;
  }
  if (!spec.tty) return vm->Exec(container, spec, "", std::move(callbacks), error);  // the container's process
  // With a terminal, the guest's runc takes the process (sized) from the share; the guest agent
  // removes the file when the session ends.
  const std::string exec_dir = ContainerDir(sandbox_id, container) + "/exec";
  std::error_code ignored;
  fs::create_directories(exec_dir, ignored);
  const std::string process_file = exec_dir + "/" + crypto::NewUuid() + ".process.json";
  if (auto failed = WriteExecProcess(ContainerDir(sandbox_id, container) + "/bundle", spec.command, spec.tty,
                                     spec.rows, spec.cols, process_file)) {
    *error = *failed;
    return nullptr;
  }
  auto process = vm->Exec(container, spec, *GuestPath(sandbox_id, process_file), std::move(callbacks), error);
  if (!process) fs::remove(process_file, ignored);
  return process;  // the session holds the VM object
}

std::optional<std::string> IsolatingRuntime::CreateSandbox(const SandboxSpec& spec) {
  if (!IsMicroVm(spec)) return containers_.CreateSandbox(spec);
  if (!microvms_) return "this node offers no MicroVM isolation";
  return microvms_->CreateSandbox(spec);
}

std::optional<std::string> IsolatingRuntime::ClaimSpare(const std::string& spare_id, const SandboxSpec& spec) {
  if (IsMicroVm(spec)) return "the standby pool holds runc sandboxes only";
  return containers_.ClaimSpare(spare_id, spec);
}

}  // namespace skiff::node
