#include "skiff/node/seccomp_bpf.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "skiff/node/bundle.h"

namespace skiff::node {
namespace {

v1::Seccomp DefaultProfile() {
  std::ifstream in(std::string(SKIFF_SOURCE_DIR) + "/infra/seccomp/default.json");
  std::stringstream text;
  text << in.rdbuf();
  auto profile = ParseSeccompProfile(text.str());
  EXPECT_TRUE(profile.has_value());
  return profile.value_or(v1::Seccomp{});
}

// Runs `probe` in a child under the program; returns the child's exit code.
int UnderFilter(const std::string& program, int (*probe)()) {
  pid_t child = ::fork();
  if (child == 0) {
    sock_fprog prog{static_cast<unsigned short>(program.size() / sizeof(sock_filter)),
                    reinterpret_cast<sock_filter*>(const_cast<char*>(program.data()))};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
      ::_exit(100);
    }
    ::_exit(probe());
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
}

TEST(SeccompBpf, CompilesTheDefaultProfileToAProgramTheKernelLoads) {
  std::string error;
  auto program = CompileSeccompBpf(DefaultProfile(), &error);
  ASSERT_TRUE(program) << error;
  EXPECT_GT(program->size(), 100 * sizeof(sock_filter));
  EXPECT_EQ(program->size() % sizeof(sock_filter), 0u);
  // Allowed calls work; the profile's denials give its errno: EPERM by default, ENOSYS for clone3.
  EXPECT_EQ(UnderFilter(*program, [] { return ::getppid() > 0 ? 0 : 1; }), 0);
  EXPECT_EQ(UnderFilter(*program, [] { return ::syscall(SYS_acct, nullptr) == -1 ? errno : 0; }), EPERM);
  EXPECT_EQ(UnderFilter(*program, [] { return ::syscall(SYS_ptrace, 0, 0, 0, 0) == -1 ? errno : 0; }), EPERM);
  EXPECT_EQ(UnderFilter(*program, [] { return ::syscall(SYS_clone3, nullptr, 0) == -1 ? errno : 0; }), ENOSYS);
  // io_uring is a large kernel surface that seccomp cannot see into: denied outright.
  EXPECT_EQ(UnderFilter(*program, [] { return ::syscall(SYS_io_uring_setup, 1, nullptr) == -1 ? errno : 0; }), EPERM);
  EXPECT_EQ(UnderFilter(*program, [] { return ::syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0) == -1 ? errno : 0; }),
            EPERM);
  // Argument rules: personality() may only query or set the plain Linux personalities.
  EXPECT_EQ(UnderFilter(*program, [] { return ::personality(0xffffffff) == -1 ? errno : 0; }), 0);
  EXPECT_EQ(UnderFilter(*program, [] { return ::personality(READ_IMPLIES_EXEC) == -1 ? errno : 0; }), EPERM);
}

TEST(SeccompBpf, RejectsWhatLibseccompCannotExpress) {
  std::string error;
  v1::Seccomp profile;
  profile.set_default_action("SCMP_ACT_SOMETIMES");
  EXPECT_FALSE(CompileSeccompBpf(profile, &error));
  EXPECT_NE(error.find("SCMP_ACT_SOMETIMES"), std::string::npos);

  profile.set_default_action("SCMP_ACT_ERRNO");
  profile.add_architectures("SCMP_ARCH_PDP11");
  EXPECT_FALSE(CompileSeccompBpf(profile, &error));
  EXPECT_NE(error.find("SCMP_ARCH_PDP11"), std::string::npos);

  profile.clear_architectures();
  auto* rule = profile.add_syscalls();
  rule->add_names("personality");
  rule->set_action("SCMP_ACT_ALLOW");
  auto* arg = rule->add_args();
  arg->set_index(0);
  arg->set_op("SCMP_CMP_ROUGHLY");
  EXPECT_FALSE(CompileSeccompBpf(profile, &error));
  EXPECT_NE(error.find("SCMP_CMP_ROUGHLY"), std::string::npos);
}

}  // namespace
}  // namespace skiff::node
