// The runc sandbox runtime for real: runc, cgroups v1, network namespaces, shims. Containers
// run from a busybox rootfs made here.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "skiff/crypto/crypto.h"
#include "skiff/node/sandbox_runtime.h"

namespace skiff::node {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct RuncTest : ::testing::Test {
  fs::path root = fs::path("/tmp") / ("skiff-node-it-" + std::to_string(::getpid()) + "-" +
                                      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::string sandbox = "g" + std::to_string(::getpid() % 100000) + "x" + std::to_string(counter++);
  std::unique_ptr<RuncRuntime> runtime;
  static inline int counter = 0;

  void SetUp() override {
    fs::create_directories(root / "rootfs/bin");
    fs::create_directories(root / "rootfs/www");
    fs::create_directories(root / "rootfs/mnt");
    fs::create_directories(root / "rootfs/etc");
    fs::copy_file("/bin/busybox", root / "rootfs/bin/busybox");
    for (const char* applet : {"sh", "echo", "cat", "sleep", "httpd", "wget", "ps", "mount", "head", "tr", "grep",
                               "true", "false", "ls", "id"}) {
      fs::create_symlink("busybox", root / "rootfs/bin" / applet);
    }
    std::ofstream(root / "rootfs/www/index.html") << "hello over localhost\n";
    std::ofstream(root / "rootfs/etc/passwd") << "root:x:0:0:root:/:/bin/sh\n";
    RuncRuntimeOptions options;
    options.root = (root / "node").string();
    options.shim_binary = SKIFF_SHIM_BIN;
    options.seccomp = *ParseSeccompProfile(ReadFile(SKIFF_SECCOMP_PROFILE));
    options.log_max_bytes = 1 << 20;
    runtime = std::make_unique<RuncRuntime>(options);
    ASSERT_FALSE(runtime->CreateSandbox({sandbox, "test-group"}));
  }
  void TearDown() override {
    runtime->DeleteSandbox(sandbox);
    fs::remove_all(root);
  }

  ContainerLaunch Launch(const std::string& name, std::vector<std::string> command, double cpu = 1, double memory_gb = 0.25) {
    ContainerLaunch launch;
    launch.group_id = sandbox;
    launch.container_name = name;
    launch.hostname = "test-group";
    launch.process = *oci::MergeProcess({{}, {}, {"PATH=/bin"}, "/", ""}, command, {});
    launch.cpu = cpu;
    launch.memory_gb = memory_gb;
    launch.rootfs = (root / "rootfs").string();
    return launch;
  }

  ContainerExit WaitExit(const std::string& name, std::chrono::seconds timeout = 30s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto exit = runtime->ExitOf(sandbox, name)) return *exit;
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << name << " did not exit";
    return {-1, "", false};
  }

  std::string Run(const std::string& name, const std::string& script, int* exit_code = nullptr) {
    EXPECT_FALSE(runtime->StartContainer(sandbox, Launch(name, {"/bin/sh", "-c", script})));
    auto exit = WaitExit(name);
    if (exit_code) *exit_code = exit.exit_code;
    return ReadFile(runtime->LogPath(sandbox, name));
  }
};

TEST_F(RuncTest, RunsToCompletionWithExitCodeAndTimestampedLogs) {
  int code = 0;
  std::string log = Run("job", "echo to-stdout; echo to-stderr >&2; exit 3", &code);
  EXPECT_EQ(code, 3);
  EXPECT_NE(log.find(" stdout to-stdout\n"), std::string::npos) << log;
  EXPECT_NE(log.find(" stderr to-stderr\n"), std::string::npos) << log;
  EXPECT_EQ(log.substr(4, 1), "-");  // starts with the RFC 3339 time
  EXPECT_EQ(log.substr(26, 2), "Z ");
  EXPECT_FALSE(runtime->IsRunning(sandbox, "job"));
}

TEST_F(RuncTest, CommandNotFoundIsReported) {
  ASSERT_FALSE(runtime->StartContainer(sandbox, Launch("missing", {"/bin/does-not-exist"})));
  auto exit = WaitExit("missing");
  EXPECT_NE(exit.exit_code, 0);
  std::string log = ReadFile(runtime->LogPath(sandbox, "missing"));
  EXPECT_NE(log.find("does-not-exist"), std::string::npos) << log;
}

TEST_F(RuncTest, OomKillIsReportedWith137) {
  auto launch = Launch("hog", {"/bin/sh", "-c", "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived"}, 1, 0.0625);
  ASSERT_FALSE(runtime->StartContainer(sandbox, launch));
  auto exit = WaitExit("hog", 60s);
  EXPECT_TRUE(exit.oom_killed) << exit.exit_code << " " << ReadFile(runtime->LogPath(sandbox, "hog"));
  EXPECT_EQ(ReadFile(runtime->LogPath(sandbox, "hog")).find("survived"), std::string::npos);
}

TEST_F(RuncTest, HardeningSeenFromInside) {
  std::string log = Run("probe", "grep -E '^(CapEff|Seccomp|NoNewPrivs)' /proc/self/status; "
                                 "mount -t tmpfs none /mnt && echo MOUNTED || echo mount-refused; "
                                 "ps -o pid | wc -l 2>/dev/null; ls /proc | grep -c '^[0-9]' ; echo done");
  EXPECT_NE(log.find("CapEff:\t00000000a80425fb"), std::string::npos) << log;  // Docker's default set
  EXPECT_NE(log.find("Seccomp:\t2"), std::string::npos) << log;
  EXPECT_NE(log.find("NoNewPrivs:\t1"), std::string::npos) << log;
  EXPECT_NE(log.find("mount-refused"), std::string::npos) << log;
  EXPECT_EQ(log.find("MOUNTED"), std::string::npos);
}

TEST_F(RuncTest, CannotSeeHostProcesses) {
  std::string log = Run("pids", "ls /proc | grep -c '^[0-9]'");
  // Only the shell and ls/grep of this container: nowhere near the host's process count.
  auto space = log.rfind(' ');
  int count = std::stoi(log.substr(space + 1));
  EXPECT_LE(count, 4) << log;
}

TEST_F(RuncTest, ContainersOfAGroupShareLocalhost) {
  ASSERT_FALSE(runtime->StartContainer(sandbox, Launch("server", {"/bin/httpd", "-f", "-p", "8080", "-h", "/www"})));
  int code = 0;
  std::string log = Run("client", "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.2; done; exit 1", &code);
  EXPECT_EQ(code, 0) << log;
  EXPECT_NE(log.find("hello over localhost"), std::string::npos) << log;
  EXPECT_TRUE(runtime->IsRunning(sandbox, "server"));
  // httpd is PID 1 without a TERM handler, so only SIGKILL ends it (the node's stop sends TERM,
  // waits the grace period, then KILL).
  ASSERT_FALSE(runtime->Signal(sandbox, "server", SIGKILL));
  auto exit = WaitExit("server");
  EXPECT_EQ(exit.exit_code, 128 + SIGKILL);
}

TEST_F(RuncTest, CpuLimitIsEnforced) {
  ASSERT_FALSE(runtime->StartContainer(sandbox, Launch("busy", {"/bin/sh", "-c", "while true; do :; done"}, 0.25)));
  const std::string usage_file = "/sys/fs/cgroup/cpuacct" + CgroupPath(sandbox, "busy") + "/cpuacct.usage";
  std::this_thread::sleep_for(300ms);
  auto read_usage = [&] { return std::stoll(ReadFile(usage_file)); };
  long long before = read_usage();
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(2s);
  double cores = (read_usage() - before) / 1e9 /
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(cores, 0.15);
  EXPECT_LT(cores, 0.30);  // a busy loop gets its quarter core, not more
  runtime->Signal(sandbox, "busy", SIGKILL);
  EXPECT_EQ(WaitExit("busy").exit_code, 137);
}

TEST_F(RuncTest, ContainersOutliveTheNodeProcessAndAreReadopted) {
  ASSERT_FALSE(runtime->StartContainer(sandbox, Launch("daemon", {"/bin/sh", "-c", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"})));
  // A new runtime object over the same state, as after a node restart, finds it running.
  RuncRuntimeOptions options;
  options.root = (root / "node").string();
  options.shim_binary = SKIFF_SHIM_BIN;
  RuncRuntime restarted(options);
  EXPECT_TRUE(restarted.IsRunning(sandbox, "daemon"));
  EXPECT_FALSE(restarted.ExitOf(sandbox, "daemon").has_value());
  auto signal_error = restarted.Signal(sandbox, "daemon", SIGTERM);
  ASSERT_FALSE(signal_error) << *signal_error;
  auto exit = WaitExit("daemon");
  EXPECT_EQ(exit.exit_code, 0);
  EXPECT_NE(ReadFile(restarted.LogPath(sandbox, "daemon")).find("stdout bye"), std::string::npos);
}

}  // namespace
}  // namespace skiff::node
