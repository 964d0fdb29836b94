// A microVM sandbox for real (root; QEMU microvm with KVM, or TCG where there is none): the
// guest boots Debian's cloud kernel with Skiff's initramfs, the agent starts containers from
// bundles in the shared sandbox directory with runc, and their output and exit come back.
// Checks: the guest's kernel is not the host's; output and exit codes; the host's processes
// and files are invisible; two containers share the VM's localhost; killing the VMM is noticed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/utsname.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>

#include "skiff/node/bundle.h"
#include "skiff/node/microvm.h"

namespace skiff::node {
namespace {

namespace fs = std::filesystem;

struct Collected {
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, int> exits;
  std::string vm_exit;

  bool WaitExit(const std::string& name, std::chrono::seconds limit) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, limit, [&] { return exits.count(name) > 0; });
  }
};

std::string Shell(const std::string& command) {
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
    ::pclose(pipe);
  }
  return out;
}

class MicroVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    dir_ = fs::temp_directory_path() / ("skiff-microvm-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "share/containers");
    fs::create_directories(dir_ / "state");
  }
  void TearDown() override {
    vm_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // A busybox bundle in the share whose container runs `script` with sh.
  void AddContainer(const std::string& name, const std::string& script) {
    const fs::path bundle = dir_ / "share/containers" / name;
    fs::create_directories(bundle / "rootfs/bin");
    fs::copy_file("/bin/busybox", bundle / "rootfs/bin/busybox");
    for (const char* applet : {"sh", "echo", "uname", "cat", "ls", "ps", "nc", "sleep", "test"}) {
      fs::create_symlink("busybox", bundle / "rootfs/bin" / applet);
    }
    fs::create_directories(bundle / "rootfs/proc");
    Shell("runc spec --bundle " + bundle.string());
    std::ifstream in(bundle / "config.json");
    std::stringstream text;
    text << in.rdbuf();
    std::string config = text.str();
    auto replace = [&](const std::string& from, const std::string& to) {
      auto at = config.find(from);
      ASSERT_NE(at, std::string::npos) << from;
      config.replace(at, from.size(), to);
    };
    replace("\"terminal\": true", "\"terminal\": false");
    replace("\"sh\"\n\t\t]", "\"sh\", \"-c\", \"" + script + "\"\n\t\t]");
    // The VM's network namespace is the group's: containers share it (and its localhost).
    replace("{\n\t\t\t\t\"type\": \"network\"\n\t\t\t},", "");
    std::ofstream(bundle / "config.json") << config;
  }

  void Boot() {
    MicroVmOptions options;
    options.kernel = SKIFF_GUEST_KERNEL;
    options.initramfs = SKIFF_GUEST_INITRAMFS;
    options.share_dir = (dir_ / "share").string();
    options.state_dir = (dir_ / "state").string();
    options.memory_mb = 256;
    MicroVmEvents events;
    events.on_exit = [this](const std::string& c, int code, int64_t) {
      std::lock_guard lock(seen_.mutex);
      seen_.exits[c] = code;
      seen_.changed.notify_all();
    };
    events.on_vm_exit = [this](const std::string& reason) {
      std::lock_guard lock(seen_.mutex);
      seen_.vm_exit = reason;
      seen_.changed.notify_all();
    };
    std::string error;
    vm_ = MicroVm::Boot(options, events, &error);
    ASSERT_TRUE(vm_) << error;
  }

  std::optional<std::string> Start(const std::string& name) {
    const std::string guest = "/sandbox/containers/" + name;
    return vm_->StartContainer({name, guest, guest + "/state", guest + "/log"});
  }
  // The container's log as the guest's shim wrote it into the share (the node reads it so).
  std::string Log(const std::string& name) {
    std::ifstream in(dir_ / "share/containers" / name / "log");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  std::string ExitRecord(const std::string& name) {
    std::ifstream in(dir_ / "share/containers" / name / "state/exit");
    std::string line;
    std::getline(in, line);
    return line;
  }

  fs::path dir_;
  Collected seen_;
  std::shared_ptr<MicroVm> vm_;
};

TEST_F(MicroVmTest, ContainersRunInTheGuestKernelIsolatedFromTheHost) {
  AddContainer("app", "echo kernel $(uname -r); echo to-stderr >&2; "
                      "if test -e /work || test -e /proc/1/root/work; then echo host-visible; fi; "
                      "ps -o comm | grep -c -e qemu -e skiff-node -e microvm_integration; exit 3");
  Boot();
  utsname host{};
  ::uname(&host);
  const std::string guest_kernel = fs::path(SKIFF_GUEST_KERNEL).filename().string().substr(std::string("vmlinuz-").size());
  EXPECT_EQ(vm_->kernel_release(), guest_kernel);
  EXPECT_NE(vm_->kernel_release(), std::string(host.release));

  ASSERT_EQ(Start("app"), std::nullopt);
  ASSERT_TRUE(seen_.WaitExit("app", std::chrono::seconds(60)));
  std::lock_guard lock(seen_.mutex);
  EXPECT_EQ(seen_.exits["app"], 3);
  EXPECT_EQ(ExitRecord("app").rfind("3 ", 0), 0u) << ExitRecord("app");
  const std::string log = Log("app");
  EXPECT_NE(log.find(" stdout kernel " + guest_kernel), std::string::npos) << log;
  EXPECT_NE(log.find(" stderr to-stderr"), std::string::npos) << log;
  EXPECT_EQ(log.find("host-visible"), std::string::npos) << log;
  EXPECT_NE(log.find(" stdout 0\n"), std::string::npos) << "host processes seen: " << log;
}

TEST_F(MicroVmTest, ExecRunsInTheContainerWithAndWithoutATerminal) {
  AddContainer("app", "echo ready; sleep 1000");
  Boot();
  ASSERT_EQ(Start("app"), std::nullopt);
  struct Session {
    std::mutex mutex;
    std::condition_variable changed;
    std::string output;
    std::optional<int> code;
  };
  auto run = [&](ExecSpec spec, const std::string& input, const std::string& process_file = {}) {
    auto session = std::make_shared<Session>();
    ExecCallbacks callbacks;
    callbacks.on_output = [session](std::string_view data) {
      std::lock_guard lock(session->mutex);
      session->output.append(data);
    };
    callbacks.on_exit = [session](int code) {
      std::lock_guard lock(session->mutex);
      session->code = code;
      session->changed.notify_all();
    };
    std::string error;
    auto process = vm_->Exec("app", spec, process_file, callbacks, &error);
    EXPECT_TRUE(process) << error;
    if (!process) return session;
    if (!input.empty()) process->Write(input);
    process->CloseInput();
    std::unique_lock lock(session->mutex);
    EXPECT_TRUE(session->changed.wait_for(lock, std::chrono::seconds(60), [&] { return session->code.has_value(); }));
    lock.unlock();
    EXPECT_TRUE(process->Done());
    return session;
  };
  ExecSpec piped;
  piped.command = {"sh", "-c", "read word; echo got-$word; uname -r; exit 7"};
  auto first = run(piped, "hello\n");
  EXPECT_EQ(first->code, 7);
  EXPECT_NE(first->output.find("got-hello"), std::string::npos) << first->output;
  EXPECT_NE(first->output.find(vm_->kernel_release()), std::string::npos) << first->output;

  // With a terminal, as the node runs it: the process from a file in the share, sized before the
  // command starts (runc's --tty alone leaves it 0 x 0 for a moment).
  ExecSpec terminal;
  terminal.command = {"sh", "-c", "stty size; test -t 0 && echo a-tty"};
  terminal.tty = true;
  terminal.rows = 33;
  terminal.cols = 101;
  const fs::path exec_dir = dir_ / "share/containers/app/exec";
  fs::create_directories(exec_dir);
  ASSERT_EQ(WriteExecProcess((dir_ / "share/containers/app").string(), terminal.command, true, 33, 101,
                             (exec_dir / "one.process.json").string()),
            std::nullopt);
  auto second = run(terminal, "", "/sandbox/containers/app/exec/one.process.json");
  EXPECT_EQ(second->code, 0);
  EXPECT_NE(second->output.find("33 101"), std::string::npos) << second->output;
  EXPECT_NE(second->output.find("a-tty"), std::string::npos) << second->output;
  for (int i = 0; i < 100 && fs::exists(exec_dir / "one.process.json"); ++i) ::usleep(20000);
  EXPECT_FALSE(fs::exists(exec_dir / "one.process.json")) << "the agent removes the process file";

  // A process file outside the container's exec directory is refused.
  std::string refused;
  EXPECT_FALSE(vm_->Exec("app", terminal, "/sandbox/containers/app/../../etc/x.json", {}, &refused));
  EXPECT_NE(refused.find("outside"), std::string::npos) << refused;

  std::string error;
  ExecSpec nothing;
  nothing.command = {"true"};
  EXPECT_FALSE(vm_->Exec("nobody", nothing, "", {}, &error));
  EXPECT_NE(error.find("not running"), std::string::npos) << error;
}

TEST_F(MicroVmTest, TwoContainersShareTheVmsLocalhostAndSignalsReachThem) {
  AddContainer("server", "echo from-server | nc -l -p 8080; sleep 1000");
  AddContainer("client", "sleep 2; nc 127.0.0.1 8080 </dev/null");
  Boot();
  ASSERT_EQ(Start("server"), std::nullopt);
  ASSERT_EQ(Start("client"), std::nullopt);
  ASSERT_TRUE(seen_.WaitExit("client", std::chrono::seconds(60)));
  EXPECT_NE(Log("client").find("from-server"), std::string::npos) << Log("client");
  ASSERT_EQ(vm_->Signal("server", SIGKILL), std::nullopt);
  ASSERT_TRUE(seen_.WaitExit("server", std::chrono::seconds(60)));
  std::lock_guard lock(seen_.mutex);
  EXPECT_EQ(seen_.exits["server"], 128 + SIGKILL);
  EXPECT_EQ(ExitRecord("server").rfind("137 ", 0), 0u) << ExitRecord("server");
  EXPECT_NE(vm_->Signal("nobody", SIGTERM), std::nullopt);
}

TEST_F(MicroVmTest, AKilledVmmIsNoticed) {
  AddContainer("app", "sleep 1000");
  Boot();
  ASSERT_EQ(Start("app"), std::nullopt);
  ::kill(vm_->vmm_pid(), SIGKILL);
  std::unique_lock lock(seen_.mutex);
  ASSERT_TRUE(seen_.changed.wait_for(lock, std::chrono::seconds(30), [&] { return !seen_.vm_exit.empty(); }));
  lock.unlock();
  EXPECT_NE(Start("app"), std::nullopt);  // a clear error, no hang
  EXPECT_FALSE(vm_->Alive());
}

// /dev/kvm opening is not enough: the VM must be able to boot the kernel (nested KVM without
// VMX creates VMs that never leave the boot loader). A kernel that cannot boot is never KVM's.
TEST_F(MicroVmTest, KvmIsUsedOnlyWhereItBootsTheKernel) {
  EXPECT_FALSE(KvmBootsGuests("qemu-system-x86_64", (dir_ / "no-such-kernel").string(), (dir_ / "state").string()));
  AddContainer("app", "true");
  Boot();
  EXPECT_EQ(vm_->kvm(), KvmBootsGuests("qemu-system-x86_64", SKIFF_GUEST_KERNEL, (dir_ / "state").string()));
  for (const auto& entry : fs::directory_iterator(dir_ / "state")) {
    EXPECT_EQ(entry.path().filename().string().rfind("kvm-probe", 0), std::string::npos) << "the probe's console stays";
  }
}

}  // namespace
}  // namespace skiff::node
