#include "skiff/node/seccomp_bpf.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <vector>

namespace skiff::node {

namespace {

std::optional<uint32_t> Action(const std::string& name, std::optional<uint32_t> errno_ret) {
  if (name == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (name == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(errno_ret.value_or(EPERM));
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (name == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (name == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (name == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  if (name == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(errno_ret.value_or(EPERM));
  return std::nullopt;
}

std::optional<uint32_t> Architecture(const std::string& name) {
  static const std::map<std::string, uint32_t> kArchitectures = {
      {"SCMP_ARCH_X86_64", SCMP_ARCH_X86_64}, {"SCMP_ARCH_X86", SCMP_ARCH_X86},
      {"SCMP_ARCH_X32", SCMP_ARCH_X32},       {"SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64},
      {"SCMP_ARCH_ARM", SCMP_ARCH_ARM},
  };
  auto it = kArchitectures.find(name);
  if (it == kArchitectures.end()) return std::nullopt;
  return it->second;
}

std::optional<scmp_compare> Comparison(const std::string& name) {
  static const std::map<std::string, scmp_compare> kComparisons = {
      {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE},
      {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
  };
  auto it = kComparisons.find(name);
  if (it == kComparisons.end()) return std::nullopt;
  return it->second;
}

}  // namespace

std::optional<std::string> CompileSeccompBpf(const v1::Seccomp& profile, std::string* error) {
  const auto default_action =
      Action(profile.default_action(),
             profile.has_default_errno_ret() ? std::optional<uint32_t>(profile.default_errno_ret()) : std::nullopt);
  if (!default_action) {
    *error = "unknown seccomp action " + profile.default_action();
    return std::nullopt;
  }
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(*default_action), seccomp_release);
  if (!ctx) {
    *error = "seccomp_init failed";
    return std::nullopt;
  }
  // As runc and crun load it: no_new_privs is the runtime's business (the spec asks for it).
  seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  for (const auto& name : profile.architectures()) {
    auto arch = Architecture(name);
    if (!arch) {
      *error = "unknown seccomp architecture " + name;
      return std::nullopt;
    }
    int rc = seccomp_arch_add(ctx.get(), *arch);
    if (rc != 0 && rc != -EEXIST) {
      *error = "seccomp_arch_add " + name + ": " + std::to_string(rc);
      return std::nullopt;
    }
  }
  for (const auto& rule : profile.syscalls()) {
    auto action = Action(rule.action(),
                         rule.has_errno_ret() ? std::optional<uint32_t>(rule.errno_ret()) : std::nullopt);
    if (!action) {
      *error = "unknown seccomp action " + rule.action();
      return std::nullopt;
    }
    std::vector<scmp_arg_cmp> args;
    std::set<uint32_t> indices;
    bool repeated_index = false;
    for (const auto& arg : rule.args()) {
      auto op = Comparison(arg.op());
      if (!op || arg.index() > 5) {
        *error = "bad seccomp argument comparison " + arg.op() + " on argument " + std::to_string(arg.index());
        return std::nullopt;
      }
      repeated_index |= !indices.insert(arg.index()).second;
      args.push_back({arg.index(), *op, static_cast<scmp_datum_t>(arg.value()),
                      static_cast<scmp_datum_t>(arg.value_two())});
    }
    for (const auto& name : rule.names()) {
      const int number = seccomp_syscall_resolve_name(name.c_str());
      if (number == __NR_SCMP_ERROR) continue;  // unknown to this libseccomp: as runc and crun, skip it
      // Comparisons on one argument are alternatives (runc's reading): one rule each.
      std::vector<std::vector<scmp_arg_cmp>> rules;
      if (repeated_index) {
        for (const auto& arg : args) rules.push_back({arg});
      } else {
        rules.push_back(args);
      }
      for (const auto& conditions : rules) {
        int rc = seccomp_rule_add_array(ctx.get(), *action, number, static_cast<unsigned>(conditions.size()),
                                        conditions.empty() ? nullptr : conditions.data());
        // -EACCES/-EEXIST: the rule restates the default action or an earlier rule.
        if (rc != 0 && rc != -EACCES && rc != -EEXIST) {
          *error = "seccomp rule for " + name + ": " + std::to_string(rc);
          return std::nullopt;
        }
      }
    }
  }
  int fd = ::memfd_create("seccomp-bpf", MFD_CLOEXEC);
  if (fd < 0) {
    *error = "memfd_create failed";
    return std::nullopt;
  }
  std::string program;
  if (int rc = seccomp_export_bpf(ctx.get(), fd); rc != 0) {
    *error = "seccomp_export_bpf: " + std::to_string(rc);
  } else {
    const off_t size = ::lseek(fd, 0, SEEK_END);
    program.resize(static_cast<size_t>(size > 0 ? size : 0));
    if (size <= 0 || ::pread(fd, program.data(), program.size(), 0) != size) {
      *error = "reading the exported program failed";
      program.clear();
    }
  }
  ::close(fd);
  if (program.empty()) return std::nullopt;
  return program;
}

}  // namespace skiff::node
