// node_start_bench ROOTFS SECCOMP_JSON SHIM ROUNDS [userns]: start-to-running of a one-container
// group on RuncRuntime (sandbox + bundle + skiff-shim + runc run --detach) against a bare `runc run
// -d` of the same config.json, in the same run; then host memory per idle group (its shim's RSS and
// PSS). With `userns`, each Skiff group runs as the node runs it by default: in a user namespace
// of its own range (made with its network namespace) on an idmapped bind of the rootfs (the
// image cache's per-layer cost), while the bare reference stays a plain `runc run -d` without
// one: the ratio is then the whole cost of the user namespace and the confinement.
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "skiff/confine/idmap.h"
#include "skiff/confine/mounts.h"
#include "skiff/node/sandbox_runtime.h"

namespace fs = std::filesystem;
using namespace skiff::node;
using Clock = std::chrono::steady_clock;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

long KilobytesOf(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(key.size()));
  }
  return 0;
}

ContainerLaunch Launch(const std::string& group, const std::string& rootfs) {
  ContainerLaunch launch;
  launch.group_id = group;
  launch.container_name = "app";
  launch.hostname = group;
  launch.process = *skiff::oci::MergeProcess({{}, {}, {"PATH=/bin"}, "/", ""},
                                             {"/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"}, {});
  launch.cpu = 0.25;
  launch.memory_gb = 0.125;
  launch.rootfs = rootfs;
  return launch;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && !(argc == 6 && std::string(argv[5]) == "userns")) {
    std::cerr << "usage: node_start_bench ROOTFS SECCOMP_JSON SHIM ROUNDS [userns]\n";
    return 2;
  }
  const bool user_namespaces = argc == 6;
  const std::string rootfs = argv[1];
  const int rounds = std::stoi(argv[4]);
  const std::string root = "/tmp/skiff-node-bench-" + std::to_string(::getpid());
  RuncRuntimeOptions options;
  options.root = root;
  options.shim_binary = argv[3];
  options.seccomp = *ParseSeccompProfile(ReadFile(argv[2]));
  RuncRuntime runtime(options);

  std::vector<double> bare, skiff;
  for (int i = 0; i < rounds; ++i) {
    // Skiff: a whole group start on this node, from a ready rootfs (a cached image).
    const std::string group = "bench" + std::to_string(i);
    auto t0 = Clock::now();
    SandboxSpec sandbox{group, group};
    ContainerLaunch launch = Launch(group, rootfs);
    if (user_namespaces) {
      const skiff::confine::IdRange ids{(1u << 30) + static_cast<uint32_t>(i) * 65536, 65536};
      const std::string mapped = root + "/rootfs-" + group;
      fs::create_directories(mapped);
      if (auto e = skiff::confine::BindIdmapped(rootfs, ids, mapped, false)) return std::cerr << *e << "\n", 1;
      sandbox.ids = launch.ids = ids;
      launch.rootfs = mapped;
    }
    if (auto e = runtime.CreateSandbox(sandbox)) return std::cerr << *e << "\n", 1;
    if (auto e = runtime.StartContainer(group, launch)) return std::cerr << *e << "\n", 1;
    skiff.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());

    // Bare runc: the same config.json, already written, network namespace already there.
    const std::string bundle = root + "/bare-bundle";
    fs::create_directories(bundle);
    fs::copy_file(root + "/sandboxes/" + group + "/containers/app/bundle/config.json", bundle + "/config.json",
                  fs::copy_options::overwrite_existing);
    if (user_namespaces) {  // the reference: the same container without a user namespace
      ContainerLaunch plain = Launch(group, rootfs);
      plain.network_namespace = "/var/run/netns/bare-" + group;
      plain.hosts_file = root + "/sandboxes/" + group + "/hosts";
      plain.resolv_file = root + "/sandboxes/" + group + "/resolv.conf";
      plain.cgroup_parent = "skiff";
      rlimit nofile{};  // as the runtime caps it
      if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max != RLIM_INFINITY) {
        plain.open_files_limit = std::min<uint64_t>(plain.open_files_limit, nofile.rlim_max);
      }
      if (!fs::exists(plain.network_namespace)) CreateNetworkNamespace(plain.network_namespace);
      if (auto e = WriteBundleConfig(bundle, BuildRuntimeSpec(plain, options.seccomp))) return std::cerr << *e << "\n", 1;
    }
    std::string config = ReadFile(bundle + "/config.json");
    const std::string from = "/skiff/" + group + "/app", to = "/skiff/" + group + "/bare";
    config.replace(config.find(from), from.size(), to);
    std::ofstream(bundle + "/config.json") << config;
    const std::string id = "bare-" + std::to_string(i);
    auto t1 = Clock::now();
    if (RunProgram({"runc", "--root", root + "/runc", "run", "-d", "--bundle", bundle, id}) != 0) {
      std::string why;
      RunProgram({"runc", "--root", root + "/runc", "run", "-d", "--bundle", bundle, id + "-again"}, &why);
      std::cerr << "runc run -d failed: " << why << "\n";
      return 1;
    }
    bare.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t1).count());
    RunProgram({"runc", "--root", root + "/runc", "delete", "--force", id});
    runtime.DeleteSandbox(group);
    if (user_namespaces) {
      DeleteNetworkNamespace("/var/run/netns/bare-" + group);
      skiff::confine::UnmountBeneath(root + "/rootfs-" + group);
      ::umount2((root + "/rootfs-" + group).c_str(), MNT_DETACH);
      fs::remove(root + "/rootfs-" + group);
    }
  }
  double ratio = Median(skiff) / Median(bare);
  std::printf("start-to-running, median of %d%s: skiff group %.1f ms, bare runc run -d %.1f ms, ratio %.2f (target <= 1.3)\n",
              rounds, user_namespaces ? " (skiff in a user namespace, idmapped rootfs)" : "", Median(skiff),
              Median(bare), ratio);

  // Memory: 10 idle groups; what each costs the host beyond its container is its shim.
  std::vector<long> rss, pss;
  for (int i = 0; i < 10; ++i) {
    const std::string group = "idle" + std::to_string(i);
    runtime.CreateSandbox({group, group});
    runtime.StartContainer(group, Launch(group, rootfs));
  }
  ::sleep(1);
  for (int i = 0; i < 10; ++i) {
    std::string pid = ReadFile(root + "/sandboxes/idle" + std::to_string(i) + "/containers/app/state/shim.pid");
    pid.erase(pid.find_last_not_of("\n") + 1);
    rss.push_back(KilobytesOf("/proc/" + pid + "/status", "VmRSS:"));
    pss.push_back(KilobytesOf("/proc/" + pid + "/smaps_rollup", "Pss:"));
  }
  for (int i = 0; i < 10; ++i) runtime.DeleteSandbox("idle" + std::to_string(i));
  double avg_rss = 0, avg_pss = 0;
  for (int i = 0; i < 10; ++i) avg_rss += rss[i] / 10.0, avg_pss += pss[i] / 10.0;
  std::printf("host memory per idle group (its shim), 10 groups: RSS %.0f KiB, PSS %.0f KiB (target <= 2048 KiB)\n",
              avg_rss, avg_pss);
  fs::remove_all(root);
  return 0;
}
