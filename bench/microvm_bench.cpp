// Boot-to-container-running of a one-container microVM group (QEMU microvm, the Debian cloud
// kernel, Skiff's initramfs, virtiofsd, the guest agent, the shim and crun in the guest) against a bare
// `qemu-system-x86_64 -M microvm` boot of the same kernel to a busybox shell that powers off
// at once, in the same run, alternating which goes first. Then the host memory of one idle
// microVM group (VMM + virtiofsd, PSS). Run by bench/microvm_e2e (root).
// The container's config.json is the node's own (BuildRuntimeSpec with its seccomp profile).
// usage: microvm_bench KERNEL SKIFF_INITRAMFS BARE_INITRAMFS SHARE_DIR ROUNDS SECCOMP_PROFILE
#include <sys/wait.h>
#include <unistd.h>

#include <sys/mount.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "skiff/crypto/crypto.h"
#include "skiff/node/bundle.h"
#include "skiff/node/microvm.h"
#include "skiff/node/microvm_runtime.h"
#include "skiff/node/seccomp_bpf.h"

namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

long PssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Pss:", 0) == 0) return std::stol(line.substr(4));
  }
  return 0;
}

double BareBoot(const std::string& kernel, const std::string& initramfs, bool kvm) {
  const std::string cmdline = "console=ttyS0 quiet panic=-1 pci=off" + std::string(kvm ? "" : " tsc_early_khz=" + skiff::node::HostTscKhz());
  const std::string command = "qemu-system-x86_64 -M microvm -accel " + std::string(kvm ? "kvm -cpu host" : "tcg -cpu max") +
                              " -smp 1 -m 256M -nodefaults -no-user-config -display none -no-reboot -serial null"
                              " -kernel " + kernel + " -initrd " + initramfs + " -append '" + cmdline + "'";
  auto t0 = Clock::now();
  if (std::system(command.c_str()) != 0) std::fprintf(stderr, "bare boot failed\n");
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: microvm_bench KERNEL SKIFF_INITRAMFS BARE_INITRAMFS SHARE_DIR ROUNDS SECCOMP_PROFILE\n");
    return 2;
  }
  const std::string kernel = argv[1], initramfs = argv[2], bare_initramfs = argv[3], share = argv[4];
  const int rounds = std::atoi(argv[5]);
  std::ifstream profile_file(argv[6]);
  std::string profile((std::istreambuf_iterator<char>(profile_file)), {});
  auto seccomp = skiff::node::ParseSeccompProfile(profile);
  if (!seccomp) {
    std::fprintf(stderr, "%s is not a seccomp profile\n", argv[6]);
    return 2;
  }
  // The container as MicroVmRuntime::StartContainer writes it: guest paths under /sandbox.
  skiff::node::ContainerLaunch launch;
  launch.group_id = "bench-group";
  launch.container_name = "app";
  launch.hostname = "bench";
  launch.process.args = {"sh", "-c", "echo up; sleep 1000"};
  launch.process.env = {"PATH=/bin"};
  launch.cpu = 1;
  launch.memory_gb = 0.125;
  launch.rootfs = "/sandbox/containers/app/rootfs";
  launch.hosts_file = "/sandbox/hosts";
  launch.resolv_file = "/sandbox/resolv.conf";
  std::ofstream(share + "/hosts") << "127.0.0.1 localhost bench\n";
  std::ofstream(share + "/resolv.conf") << "nameserver 127.0.0.1\n";
  auto spec = skiff::node::BuildRuntimeSpec(launch, *seccomp);
  std::string seccomp_error;
  if (auto program = skiff::node::CompileSeccompBpf(*seccomp, &seccomp_error)) {  // as MicroVmRuntime does, once
    (*spec.mutable_annotations())[skiff::node::kSeccompBpfAnnotation] = skiff::crypto::Base64Encode(*program);
  }
  std::string config;
  (void)google::protobuf::util::MessageToJsonString(spec, &config);
  std::ofstream(share + "/containers/app/config.json") << config;
  const std::string memory_dir = share + "/../memory";
  std::string memory_error;
  if (!skiff::node::MountGuestMemory(memory_dir, &memory_error)) {
    std::fprintf(stderr, "%s\n", memory_error.c_str());
    return 1;
  }
  std::vector<double> skiff, bare, ready;
  long vmm_pss = 0, virtiofsd_pss = 0;
  bool kvm = false;
  auto skiff_round = [&](bool measure_memory) {
    skiff::node::MicroVmOptions options;
    options.kernel = kernel;
    options.initramfs = initramfs;
    options.share_dir = share;
    options.state_dir = share + "/../state";
    options.memory_mb = 256;
    options.memory_dir = memory_dir;  // as a node's MicroVmRuntime sets it
    skiff::node::MicroVmEvents events;
    auto t0 = Clock::now();
    std::string error;
    auto vm = skiff::node::MicroVm::Boot(options, events, &error);
    if (!vm) {
      std::fprintf(stderr, "boot failed: %s\n", error.c_str());
      std::exit(1);
    }
    kvm = vm->kvm();
    ready.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    std::filesystem::remove_all(share + "/containers/app/state");
    // Returns once the guest's shim has seen `runc run` start the container: it runs.
    if (auto failed = vm->StartContainer({"app", "/sandbox/containers/app", "/sandbox/containers/app/state",
                                          "/sandbox/containers/app/log"})) {
      std::fprintf(stderr, "start failed: %s\n", failed->c_str());
      std::exit(1);
    }
    skiff.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!std::filesystem::exists(share + "/containers/app/state/started") ||
        std::filesystem::exists(share + "/containers/app/state/exit")) {
      std::fprintf(stderr, "the container did not start\n");
      std::exit(1);
    }
    if (measure_memory) {
      ::sleep(2);  // settled: the group idles
      vmm_pss = PssKib(vm->vmm_pid());
      virtiofsd_pss = 0;
      // virtiofsd is the VM's sibling: find it by its socket path.
      std::FILE* pipe = ::popen(("pgrep -f 'virtiofsd --socket-path=" + options.state_dir + "'").c_str(), "r");
      int pid = 0;
      while (pipe && std::fscanf(pipe, "%d", &pid) == 1) virtiofsd_pss += PssKib(pid);
      if (pipe) ::pclose(pipe);
    }
  };
  skiff_round(false);  // warm-up: page cache holds kernel, initramfs, binaries
  BareBoot(kernel, bare_initramfs, kvm);
  skiff.clear();
  ready.clear();
  for (int i = 0; i < rounds; ++i) {
    if (i % 2 == 0) {
      skiff_round(false);
      bare.push_back(BareBoot(kernel, bare_initramfs, kvm));
    } else {
      bare.push_back(BareBoot(kernel, bare_initramfs, kvm));
      skiff_round(false);
    }
  }
  skiff_round(true);
  skiff.pop_back();  // the memory round sleeps: not timed
  ready.pop_back();
  std::vector<double> container_start;
  for (size_t i = 0; i < skiff.size(); ++i) container_start.push_back(skiff[i] - ready[i]);
  // Each round's two boots ran back to back, so they share the host's load of the moment: the
  // median of the per-round ratios is less at the mercy of other tenants than the ratio of medians.
  std::vector<double> paired;
  for (size_t i = 0; i < skiff.size() && i < bare.size(); ++i) paired.push_back(skiff[i] / bare[i]);
  std::printf("%s, median of %d: Skiff microVM group boot-to-container-running %.0f ms, bare microvm boot to a shell "
              "that exits %.0f ms, ratio %.2f (target <= 1.3 under TCG)\n",
              kvm ? "KVM" : "TCG", rounds, Median(skiff), Median(bare), Median(skiff) / Median(bare));
  std::printf("per-round ratio: median %.2f, range %.2f-%.2f\n", Median(paired),
              *std::min_element(paired.begin(), paired.end()), *std::max_element(paired.begin(), paired.end()));
  std::printf("of which: boot until the guest agent answers %.0f ms, the container start in the guest (shim + OCI "
              "runtime) %.0f ms (medians)\n",
              Median(ready), Median(container_start));
  std::printf("host memory of one idle microVM group (256 MiB guest): VMM PSS %ld KiB, virtiofsd PSS %ld KiB\n",
              vmm_pss, virtiofsd_pss);
  ::umount2(memory_dir.c_str(), MNT_DETACH);
  return 0;
}
