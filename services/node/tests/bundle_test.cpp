#include "skiff/node/bundle.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace skiff::node {
namespace {

ContainerLaunch Launch() {
  ContainerLaunch launch;
  launch.group_id = "g1";
  launch.container_name = "web";
  launch.hostname = "my-group";
  launch.process = *oci::MergeProcess({{"/entry"}, {"serve"}, {"PATH=/bin"}, "/srv", ""}, {}, {{"MODE", "prod"}});
  launch.cpu = 0.5;
  launch.memory_gb = 1.5;
  launch.rootfs = "/cache/containers/g1_web/rootfs";
  launch.network_namespace = "/var/run/netns/skiff-g1";
  launch.volumes = {{"/node/g1/volumes/data", "/data", false}, {"/node/g1/volumes/creds", "/creds", true}};
  return launch;
}

TEST(BundleTest, CgroupValuesFromCoresAndGigabytes) {
  auto spec = BuildRuntimeSpec(Launch(), {});
  const auto& r = spec.linux().resources();
  EXPECT_EQ(r.cpu().period(), 100000);
  EXPECT_EQ(r.cpu().quota(), 50000);  // 0.5 cores
  EXPECT_EQ(r.cpu().shares(), 512);
  EXPECT_EQ(r.memory().limit(), 1.5 * 1024 * 1024 * 1024);
  EXPECT_EQ(r.memory().swap(), r.memory().limit());
  EXPECT_EQ(r.pids().limit(), 4096);
  EXPECT_EQ(spec.linux().cgroups_path(), "/skiff/g1/web");
}

TEST(BundleTest, ProcessFromMergedImageAndContainer) {
  auto spec = BuildRuntimeSpec(Launch(), {});
  EXPECT_EQ(spec.process().args_size(), 2);
  EXPECT_EQ(spec.process().args(0), "/entry");
  EXPECT_EQ(spec.process().cwd(), "/srv");
  EXPECT_EQ(spec.process().env(1), "MODE=prod");
  EXPECT_EQ(spec.hostname(), "my-group");
}

TEST(BundleTest, HardenedByDefault) {
  v1::Seccomp seccomp;
  seccomp.set_default_action("SCMP_ACT_ALLOW");
  auto spec = BuildRuntimeSpec(Launch(), seccomp);
  EXPECT_TRUE(spec.process().no_new_privileges());
  const auto& caps = spec.process().capabilities().bounding();
  EXPECT_EQ(caps.size(), 14);
  EXPECT_EQ(std::find(caps.begin(), caps.end(), "CAP_SYS_ADMIN"), caps.end());
  EXPECT_EQ(spec.linux().seccomp().default_action(), "SCMP_ACT_ALLOW");
  EXPECT_FALSE(spec.linux().masked_paths().empty());
  EXPECT_FALSE(spec.linux().resources().devices(0).allow());
  bool cgroup_read_only = false;
  for (const auto& m : spec.mounts()) {
    if (m.destination() == "/sys/fs/cgroup") {
      cgroup_read_only = std::find(m.options().begin(), m.options().end(), "ro") != m.options().end();
    }
  }
  EXPECT_TRUE(cgroup_read_only);
  // The group's containers share its network namespace; everything else is their own.
  int shared = 0;
  for (const auto& ns : spec.linux().namespaces()) {
    if (ns.type() == "network") {
      EXPECT_EQ(ns.path(), "/var/run/netns/skiff-g1");
      ++shared;
    } else {
      EXPECT_TRUE(ns.path().empty());
    }
  }
  EXPECT_EQ(shared, 1);
}

TEST(BundleTest, WithARangeTheContainerRunsInItsOwnUserNamespace) {
  ContainerLaunch launch = Launch();
  launch.ids = confine::IdRange{1u << 30, 65536};
  auto spec = BuildRuntimeSpec(launch, {});
  bool user = false;
  for (const auto& ns : spec.linux().namespaces()) user = user || (ns.type() == "user" && ns.path().empty());
  EXPECT_TRUE(user);
  for (const auto& mappings : {spec.linux().uid_mappings(), spec.linux().gid_mappings()}) {
    ASSERT_EQ(mappings.size(), 1);
    EXPECT_EQ(mappings[0].container_id(), 0u);
    EXPECT_EQ(mappings[0].host_id(), 1u << 30);
    EXPECT_EQ(mappings[0].size(), 65536u);
  }
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(spec, &json).ok());
  EXPECT_NE(json.find("\"uidMappings\":[{\"hostID\":1073741824,\"size\":65536}]"), std::string::npos) << json;
  launch.user_namespace = "/node/sandboxes/g1/userns";
  bool joined = false;
  const auto shared = BuildRuntimeSpec(launch, {});
  for (const auto& ns : shared.linux().namespaces()) {
    joined = joined || (ns.type() == "user" && ns.path() == "/node/sandboxes/g1/userns");
  }
  EXPECT_TRUE(joined) << "the group's containers share its user namespace";
  // Without a range (a microVM's guest), the host's user namespace.
  const auto plain = BuildRuntimeSpec(Launch(), {});
  for (const auto& ns : plain.linux().namespaces()) EXPECT_NE(ns.type(), "user");
}

TEST(BundleTest, VolumesAreBoundWithTheirModes) {
  auto spec = BuildRuntimeSpec(Launch(), {});
  std::map<std::string, std::vector<std::string>> options;
  for (const auto& m : spec.mounts()) options[m.destination()] = {m.options().begin(), m.options().end()};
  EXPECT_EQ(options["/data"].back(), "rw");
  EXPECT_EQ(options["/creds"].back(), "ro");
}

TEST(BundleTest, JsonHasNumbersWhereRuncExpectsThem) {
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(BuildRuntimeSpec(Launch(), {}), &json).ok());
  EXPECT_NE(json.find("\"quota\":50000"), std::string::npos) << json;
  EXPECT_NE(json.find("\"limit\":1610612736"), std::string::npos) << json;
  EXPECT_NE(json.find("\"noNewPrivileges\":true"), std::string::npos);
  EXPECT_NE(json.find("\"cgroupsPath\":\"/skiff/g1/web\""), std::string::npos);
}

TEST(BundleTest, ResolvesUsersFromTheRootfs) {
  auto root = std::filesystem::path(::testing::TempDir()) / "rootfs-users";
  std::filesystem::create_directories(root / "etc");
  std::ofstream(root / "etc/passwd") << "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:102::/:/bin/false\n";
  std::ofstream(root / "etc/group") << "root:x:0:\nnginx:x:102:\nwww:x:33:\n";
  EXPECT_EQ(ResolveUser("", root), std::make_pair(0u, 0u));
  EXPECT_EQ(ResolveUser("nginx", root), std::make_pair(101u, 102u));
  EXPECT_EQ(ResolveUser("1000", root), std::make_pair(1000u, 0u));
  EXPECT_EQ(ResolveUser("1000:33", root), std::make_pair(1000u, 33u));
  EXPECT_EQ(ResolveUser("nginx:www", root), std::make_pair(101u, 33u));
  EXPECT_FALSE(ResolveUser("nobody-here", root).has_value());
  EXPECT_FALSE(ResolveUser("nginx:nogroup", root).has_value());
}

TEST(BundleTest, SeccompProfileFromConfig) {
  std::ifstream in(std::string(SKIFF_SOURCE_DIR) + "/infra/seccomp/default.json");
  std::string json((std::istreambuf_iterator<char>(in)), {});
  auto profile = ParseSeccompProfile(json);
  ASSERT_TRUE(profile);
  // An allowlist: what is not named fails with EPERM, as in Docker's default profile.
  EXPECT_EQ(profile->default_action(), "SCMP_ACT_ERRNO");
  EXPECT_EQ(profile->default_errno_ret(), 1u);
  const auto& allowed = profile->syscalls(0).names();
  EXPECT_EQ(profile->syscalls(0).action(), "SCMP_ACT_ALLOW");
  auto has = [&](const std::string& name) { return std::find(allowed.begin(), allowed.end(), name) != allowed.end(); };
  for (const char* name : {"read", "write", "openat", "execve", "socket", "epoll_wait", "futex", "chroot"}) {
    EXPECT_TRUE(has(name)) << name;
  }
  for (const char* name : {"mount", "umount2", "unshare", "setns", "ptrace", "bpf", "keyctl", "reboot", "kexec_load",
                           "init_module", "perf_event_open", "clone", "clone3", "personality"}) {
    EXPECT_FALSE(has(name)) << name;
  }
  // clone only without namespace flags; clone3 answers ENOSYS so libc falls back to clone.
  ASSERT_GE(profile->syscalls_size(), 3);
  EXPECT_EQ(profile->syscalls(1).names(0), "clone");
  EXPECT_EQ(profile->syscalls(1).args(0).op(), "SCMP_CMP_MASKED_EQ");
  EXPECT_EQ(profile->syscalls(1).args(0).value(), 0x7E020000);
  EXPECT_EQ(profile->syscalls(2).errno_ret(), 38u);
  // The runtime spec keeps the argument values as JSON numbers (runc refuses strings).
  std::string spec_json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(BuildRuntimeSpec(Launch(), *profile), &spec_json).ok());
  EXPECT_NE(spec_json.find(R"("value":2114060288)"), std::string::npos);
  EXPECT_FALSE(ParseSeccompProfile("{}").has_value());
}

}  // namespace
}  // namespace skiff::node
