#include "skiff/node/bundle.h"

#include <google/protobuf/util/json_util.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace skiff::node {

std::string CgroupPath(const std::string& group_id, const std::string& container, const std::string& parent) {
  return "/" + parent + "/" + group_id + "/" + container;
}

const std::vector<std::string>& DefaultCapabilities() {
  static const std::vector<std::string> kCaps{
      "CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER", "CAP_MKNOD",
      "CAP_NET_RAW", "CAP_SETGID",      "CAP_SETUID",           "CAP_SETFCAP", "CAP_SETPCAP",
      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",     "CAP_AUDIT_WRITE"};
  return kCaps;
}

namespace {

void AddMount(v1::RuntimeSpec& spec, const std::string& destination, const std::string& type, const std::string& source,
              std::vector<std::string> options) {
  auto* mount = spec.add_mounts();
  mount->set_destination(destination);
  mount->set_type(type);
  mount->set_source(source);
  for (auto& option : options) mount->add_options(std::move(option));
}

}  // namespace

v1::RuntimeSpec BuildRuntimeSpec(const ContainerLaunch& launch, const v1::Seccomp& seccomp) {
  v1::RuntimeSpec spec;
  spec.set_oci_version("1.0.2");
  spec.set_hostname(launch.hostname);

  auto* process = spec.mutable_process();
  process->set_terminal(launch.terminal);
  process->mutable_user()->set_uid(launch.uid);
  process->mutable_user()->set_gid(launch.gid);
  for (const auto& arg : launch.process.args) process->add_args(arg);
  for (const auto& env : launch.process.env) process->add_env(env);
  process->set_cwd(launch.process.cwd.empty() ? "/" : launch.process.cwd);
  auto* caps = process->mutable_capabilities();
  for (const auto& cap : DefaultCapabilities()) {
    caps->add_bounding(cap);
    caps->add_effective(cap);
    caps->add_permitted(cap);
  }
  process->set_no_new_privileges(true);
  auto* nofile = process->add_rlimits();
  nofile->set_type("RLIMIT_NOFILE");
  nofile->set_hard(static_cast<double>(launch.open_files_limit));
  nofile->set_soft(static_cast<double>(launch.open_files_limit));

  spec.mutable_root()->set_path(launch.rootfs);
  spec.mutable_root()->set_readonly(false);

  AddMount(spec, "/proc", "proc", "proc", {"nosuid", "noexec", "nodev"});
  AddMount(spec, "/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"});
  AddMount(spec, "/dev/pts", "devpts", "devpts", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"});
  AddMount(spec, "/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"});
  AddMount(spec, "/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"});
  // sysfs: in a user namespace, its root may mount it because that namespace owns the group's
  // network namespace (RuncRuntime makes them together).
  AddMount(spec, "/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"});
  AddMount(spec, "/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"});
  if (!launch.hosts_file.empty()) AddMount(spec, "/etc/hosts", "bind", launch.hosts_file, {"rbind", "ro"});
  if (!launch.resolv_file.empty()) AddMount(spec, "/etc/resolv.conf", "bind", launch.resolv_file, {"rbind", "ro"});
  for (const auto& volume : launch.volumes) {
    AddMount(spec, volume.destination, "bind", volume.source,
             {"rbind", "nosuid", "nodev", volume.read_only ? "ro" : "rw"});
  }

  auto* linux = spec.mutable_linux();
  linux->set_cgroups_path(CgroupPath(launch.group_id, launch.container_name, launch.cgroup_parent));
  auto* resources = linux->mutable_resources();
  auto* deny_devices = resources->add_devices();  // no host devices
  deny_devices->set_allow(false);
  deny_devices->set_access("rwm");
  const double memory_bytes = std::round(launch.memory_gb * 1024.0 * 1024.0 * 1024.0);
  resources->mutable_memory()->set_limit(memory_bytes);
  resources->mutable_memory()->set_swap(memory_bytes);  // memory+swap = memory: no swap
  resources->mutable_cpu()->set_period(kCpuPeriodMicros);
  resources->mutable_cpu()->set_quota(std::round(launch.cpu * kCpuPeriodMicros));
  resources->mutable_cpu()->set_shares(std::max(2.0, std::round(launch.cpu * 1024)));
  resources->mutable_pids()->set_limit(static_cast<double>(launch.pids_limit));

  for (const char* type : {"pid", "ipc", "uts", "mount"}) linux->add_namespaces()->set_type(type);
  if (launch.ids) {  // root in the container is the range's first id on the host
    auto* user = linux->add_namespaces();
    user->set_type("user");
    user->set_path(launch.user_namespace);  // shared by the group's containers; empty: a new one
    for (auto* mapping : {linux->add_uid_mappings(), linux->add_gid_mappings()}) {
      mapping->set_container_id(0);
      mapping->set_host_id(launch.ids->host_base);
      mapping->set_size(launch.ids->size);
    }
  }
  // Empty: the container stays in its runtime's network namespace. Only a microVM's guest uses
  // that (the VM is the group's network boundary); the runc runtime always names the group's.
  if (!launch.network_namespace.empty()) {
    auto* network = linux->add_namespaces();
    network->set_type("network");
    network->set_path(launch.network_namespace);
  }
  *linux->mutable_seccomp() = seccomp;
  for (const char* path : {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                           "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                           "/sys/firmware", "/sys/devices/virtual/powercap"}) {
    linux->add_masked_paths(path);
  }
  for (const char* path : {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}) {
    linux->add_readonly_paths(path);
  }
  return spec;
}

namespace {

// name:x:uid:gid:... from an /etc/passwd or /etc/group style file.
std::optional<std::pair<uint32_t, uint32_t>> LookUp(const std::string& file, const std::string& name) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields;
    std::stringstream stream(line);
    for (std::string field; std::getline(stream, field, ':');) fields.push_back(field);
    if (fields.size() >= 3 && fields[0] == name) {  // /etc/group lines may end at the gid
      try {
        uint32_t second = fields.size() >= 4 && !fields[3].empty() ? static_cast<uint32_t>(std::stoul(fields[3])) : 0;
        return std::make_pair(static_cast<uint32_t>(std::stoul(fields[2])), second);
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

std::optional<uint32_t> Number(const std::string& text) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return static_cast<uint32_t>(std::stoul(text));
}

}  // namespace

std::optional<std::pair<uint32_t, uint32_t>> ResolveUser(const std::string& user, const std::string& rootfs) {
  if (user.empty()) return std::make_pair(0u, 0u);
  std::string name = user.substr(0, user.find(':'));
  std::string group = user.find(':') == std::string::npos ? "" : user.substr(user.find(':') + 1);
  uint32_t uid = 0, gid = 0;
  if (auto n = Number(name)) {
    uid = *n;
    auto entry = LookUp(rootfs + "/etc/passwd", name);  // a numeric user's primary group, if listed
    gid = entry ? entry->second : 0;
  } else {
    auto entry = LookUp(rootfs + "/etc/passwd", name);
    if (!entry) return std::nullopt;
    uid = entry->first;
    gid = entry->second;
  }
  if (!group.empty()) {
    if (auto n = Number(group)) {
      gid = *n;
    } else {
      auto entry = LookUp(rootfs + "/etc/group", group);
      if (!entry) return std::nullopt;
      gid = entry->first;
    }
  }
  return std::make_pair(uid, gid);
}

std::optional<v1::Seccomp> ParseSeccompProfile(const std::string& json) {
  v1::Seccomp seccomp;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &seccomp, options).ok()) return std::nullopt;
  if (seccomp.default_action().empty()) return std::nullopt;
  return seccomp;
}

namespace {

std::optional<std::string> WritePrivateFile(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  ::unlink(temp.c_str());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return "cannot write " + temp + ": " + std::strerror(errno);
  bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!written || ::rename(temp.c_str(), path.c_str()) != 0) return "cannot write " + path + ": " + std::strerror(errno);
  return std::nullopt;
}

}  // namespace

std::optional<std::string> WriteBundleConfig(const std::string& bundle_dir, const v1::RuntimeSpec& spec) {
  std::string json, process;
  if (!google::protobuf::util::MessageToJsonString(spec, &json).ok() ||
      !google::protobuf::util::MessageToJsonString(spec.process(), &process).ok()) {
    return "cannot write config.json";
  }
  // The process alone too: each exec starts from it, without parsing the whole configuration
  // (its seccomp profile is most of it, and an exec probe has a second at most).
  if (auto error = WritePrivateFile(bundle_dir + "/process.json", process)) return error;
  return WritePrivateFile(bundle_dir + "/config.json", json);
}

std::optional<std::string> WriteExecProcess(const std::string& bundle_dir, const std::vector<std::string>& command,
                                            bool tty, uint16_t rows, uint16_t cols, const std::string& path) {
  google::protobuf::util::JsonParseOptions lenient;
  lenient.ignore_unknown_fields = true;
  v1::Process process;
  std::ifstream alone(bundle_dir + "/process.json");
  std::stringstream text;
  text << alone.rdbuf();
  if (!alone || !google::protobuf::util::JsonStringToMessage(text.str(), &process, lenient).ok()) {
    // A bundle written before process.json was: the process from the whole configuration.
    std::ifstream in(bundle_dir + "/config.json");
    std::stringstream config;
    config << in.rdbuf();
    v1::RuntimeSpec spec;
    if (!in || !google::protobuf::util::JsonStringToMessage(config.str(), &spec, lenient).ok()) {
      return "cannot read the container's config.json";
    }
    process = spec.process();
  }
  process.clear_args();
  for (const auto& word : command) process.add_args(word);
  process.set_terminal(tty);
  process.clear_console_size();
  if (tty) {
    process.mutable_console_size()->set_height(rows ? rows : 24);
    process.mutable_console_size()->set_width(cols ? cols : 80);
  }
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(process, &json).ok()) return "cannot write the exec's process";
  return WritePrivateFile(path, json);
}

}  // namespace skiff::node
