#include "skiff/node/microvm.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

#include "skiff/node/v1/guest.pb.h"

extern char** environ;

namespace skiff::node {
namespace fs = std::filesystem;

namespace {

// `pass_fd`, when set, becomes the child's fd 3 (QEMU's `-netdev tap,fd=3`).
pid_t Spawn(const std::vector<std::string>& args, const std::string& log, std::string* error, int pass_fd = -1) {
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&files, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  if (pass_fd >= 0) posix_spawn_file_actions_adddup2(&files, pass_fd, 3);
  posix_spawn_file_actions_addclosefrom_np(&files, pass_fd >= 0 ? 4 : 3);
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0], &files, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  if (rc != 0) {
    *error = "cannot start " + args[0] + ": " + std::strerror(rc);
    return -1;
  }
  return pid;
}

// Works for our children and for processes adopted after a node restart (not our children).
bool Exited(pid_t pid) {
  int status = 0;
  if (pid <= 0 || ::waitpid(pid, &status, WNOHANG) == pid) return true;
  return ::kill(pid, 0) != 0;
}

void Stop(pid_t& pid, int signal) {
  if (pid <= 0) return;
  ::kill(pid, signal);
  if (::waitpid(pid, nullptr, 0) != pid) {
    for (int i = 0; i < 500 && ::kill(pid, 0) == 0; ++i) ::usleep(10000);
  }
  pid = -1;
}

// The pid in `file` if that process still runs with `marker` in its command line (a recycled
// pid belongs to someone else).
pid_t LivePidFromFile(const std::string& file, const std::string& marker) {
  std::ifstream in(file);
  pid_t pid = 0;
  if (!(in >> pid) || pid <= 0 || ::kill(pid, 0) != 0) return -1;
  std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
  std::string text((std::istreambuf_iterator<char>(cmdline)), {});
  return text.find(marker) != std::string::npos ? pid : -1;
}

std::string Tail(const std::string& path, size_t bytes) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

bool WaitForPath(const std::string& path, pid_t owner, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!fs::exists(path)) {
    if (std::chrono::steady_clock::now() > deadline || ::kill(owner, 0) != 0) return false;
    ::usleep(5000);
  }
  return true;
}

}  // namespace

// What the reader thread and an exec session share: callbacks run under `callback_mutex`, and
// none runs once the session has detached (its owner may be gone then).
struct MicroVm::ExecState {
  std::mutex callback_mutex;
  ExecCallbacks callbacks;
  bool detached = false;
  bool done = false;  // under the VM's mutex_

  void Output(const std::string& data) {
    std::lock_guard lock(callback_mutex);
    if (!detached && callbacks.on_output) callbacks.on_output(data);
  }
  void Exited(int code) {
    std::lock_guard lock(callback_mutex);
    if (!detached && callbacks.on_exit) callbacks.on_exit(code);
  }
};

std::optional<std::string> MicroVm::Connect(const std::string& agent_socket) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, agent_socket.c_str(), sizeof address.sun_path - 1);
  // QEMU binds the socket a moment before it listens: a refusal then is only early.
  for (int attempt = 0;; ++attempt) {
    channel_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(channel_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return std::nullopt;
    const int error = errno;
    ::close(channel_);
    channel_ = -1;
    if (attempt >= 200 || (error != ECONNREFUSED && error != ENOENT) || Exited(qemu_pid_)) {
      return std::string("cannot reach the VMM's agent socket: ") + std::strerror(error);
    }
    ::usleep(10000);
  }
}

std::shared_ptr<MicroVm> MicroVm::Adopt(MicroVmOptions options, MicroVmEvents events, std::string* error) {
  std::shared_ptr<MicroVm> vm(new MicroVm(std::move(options), std::move(events)));
  const auto& o = vm->options_;
  vm->qemu_pid_ = LivePidFromFile(o.state_dir + "/qemu.pid", o.state_dir);
  vm->virtiofsd_pid_ = LivePidFromFile(o.state_dir + "/virtiofsd.pid", o.state_dir);
  if (vm->qemu_pid_ < 0) {
    *error = "its VMM is not running";
    vm->Shutdown();  // virtiofsd, if it outlived the VMM
    return nullptr;
  }
  if (auto failed = vm->Connect(o.state_dir + "/agent.sock")) {
    *error = *failed;
    return nullptr;
  }
  vm->reader_ = std::thread([raw = vm.get()] { raw->ReadLoop(); });
  // The agent answers once the channel is ours again (messages sent while no node listened,
  // such as exits, are gone; the shim's records in the share have them).
  if (!vm->Alive()) {
    *error = "its guest agent does not answer";
    return nullptr;
  }
  std::lock_guard lock(vm->mutex_);
  vm->ready_ = true;
  return vm;
}

void MicroVm::Detach() {
  std::lock_guard shutting(shutdown_mutex_);
  if (shut_down_) return;
  shut_down_ = true;  // the VM runs on; the next node process adopts it
  if (channel_ >= 0) ::shutdown(channel_, SHUT_RDWR);
  if (reader_.joinable()) {
    if (reader_.get_id() == std::this_thread::get_id()) reader_.detach();
    else reader_.join();
  }
}

std::string HostTscKhz() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("cpu MHz", 0) == 0) {
      double mhz = std::stod(line.substr(line.find(':') + 1));
      return std::to_string(static_cast<long>(mhz * 1000));
    }
  }
  return "2000000";
}

bool KvmBootsGuests(const std::string& qemu, const std::string& kernel, const std::string& scratch_dir) {
  int kvm = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) return false;
  ::close(kvm);
  static std::mutex probed_mutex;
  static std::map<std::string, bool> probed;  // by qemu and kernel: the answer holds for the process
  std::lock_guard lock(probed_mutex);
  const std::string key = qemu + "\n" + kernel;
  if (auto found = probed.find(key); found != probed.end()) return found->second;
  // A device that opens is not yet one that runs a guest: nested KVM without VMX, for one,
  // creates VMs but never gets the kernel past its boot loader. So boot the guest kernel itself
  // with no root: under a working KVM it reaches its panic in well under a second.
  std::error_code ignored;
  fs::create_directories(scratch_dir, ignored);
  const std::string console = scratch_dir + "/kvm-probe-" + std::to_string(::getpid()) + ".console";
  fs::remove(console, ignored);
  std::string error;
  pid_t pid = Spawn({qemu, "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "128M", "-nodefaults",
                     "-no-user-config", "-display", "none", "-no-reboot", "-serial", "file:" + console, "-kernel",
                     kernel, "-append", "console=ttyS0 panic=-1 root=/dev/skiff-kvm-probe"},
                    "/dev/null", &error);
  auto panicked = [&] {
    std::ifstream in(console);
    std::stringstream text;
    text << in.rdbuf();
    return text.str().find("Kernel panic") != std::string::npos;
  };
  bool boots = false, exited = pid <= 0;
  for (int waited_ms = 0; !exited && !boots && waited_ms < 10000; waited_ms += 50) {
    exited = Exited(pid);
    boots = panicked();  // after the exit check: the console is complete once QEMU is gone
    if (!boots && !exited) ::usleep(50000);
  }
  if (!exited) Stop(pid, SIGKILL);
  fs::remove(console, ignored);
  probed[key] = boots;
  return boots;
}

std::shared_ptr<MicroVm> MicroVm::Boot(MicroVmOptions options, MicroVmEvents events, std::string* error) {
  std::shared_ptr<MicroVm> vm(new MicroVm(std::move(options), std::move(events)));
  const auto& o = vm->options_;
  fs::create_directories(o.state_dir);
  const std::string fs_socket = o.state_dir + "/virtiofs.sock", agent_socket = o.state_dir + "/agent.sock";
  const std::string console = o.state_dir + "/console.log";
  fs::remove(fs_socket);
  fs::remove(agent_socket);
  vm->kvm_ = o.kvm ? *o.kvm : KvmBootsGuests(o.qemu, o.kernel, o.state_dir);

  vm->virtiofsd_pid_ = Spawn({o.virtiofsd, "--socket-path=" + fs_socket, "-o", "source=" + o.share_dir, "-o",
                              "sandbox=chroot", "-o", "cache=auto", "-o", "announce_submounts"},
                             o.state_dir + "/virtiofsd.log", error);
  if (vm->virtiofsd_pid_ < 0) return nullptr;
  std::ofstream(o.state_dir + "/virtiofsd.pid") << vm->virtiofsd_pid_ << "\n";
  if (!WaitForPath(fs_socket, vm->virtiofsd_pid_, std::chrono::seconds(10))) {
    *error = "virtiofsd did not start: " + Tail(o.state_dir + "/virtiofsd.log", 400);
    return nullptr;
  }

  std::string cmdline = "console=ttyS0 quiet panic=-1 pci=off skiff.share=skiff skiff.port=skiff.agent";
  if (!vm->kvm_) cmdline += " tsc_early_khz=" + HostTscKhz();
  if (o.nic) {
    cmdline += " skiff.net=" + o.nic->address + "," + o.nic->gateway + "," + std::to_string(o.nic->mtu);
  }
  const std::string memory = std::to_string(o.memory_mb) + "M";
  std::vector<std::string> nic_args;
  if (o.nic) {
    nic_args = {"-netdev", "tap,id=net0,fd=3", "-device", "virtio-net-device,netdev=net0,mac=" + o.nic->mac};
  }
  std::vector<std::string> qemu_args{o.qemu, "-M", "microvm", "-accel", vm->kvm_ ? "kvm" : "tcg", "-cpu", vm->kvm_ ? "host" : "max",
                         "-smp", std::to_string(o.vcpus), "-m", memory, "-nodefaults", "-no-user-config",
                         "-display", "none", "-no-reboot", "-serial", "file:" + console,
                         "-global", "virtio-mmio.force-legacy=false",
                         "-kernel", o.kernel, "-initrd", o.initramfs, "-append", cmdline,
                         "-object", o.memory_dir.empty()
                                        ? "memory-backend-memfd,id=mem,size=" + memory + ",share=on"
                                        // a directory: QEMU creates the file and unlinks it. Aligned
                                        // to 2 MiB, so the huge pages are mapped as such: else each
                                        // is faulted in 4 KiB at a time, 0.2 s more before the kernel runs
                                        : "memory-backend-file,id=mem,size=" + memory + ",mem-path=" + o.memory_dir +
                                              ",share=on,align=2M",
                         "-numa", "node,memdev=mem",
                         "-chardev", "socket,id=fs,path=" + fs_socket,
                         "-device", "vhost-user-fs-device,chardev=fs,tag=skiff",
                         "-chardev", "socket,id=agent,path=" + agent_socket + ",server=on,wait=off",
                         "-device", "virtio-serial-device", "-device", "virtserialport,chardev=agent,name=skiff.agent"};
  qemu_args.insert(qemu_args.end(), nic_args.begin(), nic_args.end());
  vm->qemu_pid_ = Spawn(qemu_args, o.state_dir + "/qemu.log", error, o.nic ? o.nic->tap_fd : -1);
  if (vm->qemu_pid_ < 0) return nullptr;
  std::ofstream(o.state_dir + "/qemu.pid") << vm->qemu_pid_ << "\n";
  if (!WaitForPath(agent_socket, vm->qemu_pid_, std::chrono::seconds(10))) {
    *error = "the VMM did not start: " + Tail(o.state_dir + "/qemu.log", 400);
    return nullptr;
  }
  if (auto failed = vm->Connect(agent_socket)) {
    *error = *failed;
    return nullptr;
  }
  vm->reader_ = std::thread([raw = vm.get()] { raw->ReadLoop(); });
  std::unique_lock lock(vm->mutex_);
  if (!vm->changed_.wait_for(lock, o.boot_timeout, [&] { return vm->ready_ || vm->gone_; }) || !vm->ready_) {
    lock.unlock();
    *error = "the guest did not come up (console: " + Tail(console, 600) + ")";
    return nullptr;
  }
  return vm;
}

void MicroVm::ReadLoop() {
  GuestFrameReader reader;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(channel_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reader.Append(buffer, static_cast<size_t>(n));
    while (auto frame = reader.Next()) {
      v1::GuestMessage message;
      if (!message.ParseFromString(*frame)) continue;
      switch (message.message_case()) {
        case v1::GuestMessage::kReady: {
          std::lock_guard lock(mutex_);
          kernel_release_ = message.ready().kernel_release();
          ready_ = true;
          changed_.notify_all();
          break;
        }
        case v1::GuestMessage::kReply: {
          std::lock_guard lock(mutex_);
          replies_[message.reply().request_id()] = std::make_shared<v1::GuestReply>(message.reply());
          changed_.notify_all();
          break;
        }
        case v1::GuestMessage::kExecOutput:
        case v1::GuestMessage::kExecExited:
          DeliverExec(message);
          break;
        case v1::GuestMessage::kExited:
          if (events_.on_exit) {
            events_.on_exit(message.exited().name(), message.exited().exit_code(), message.exited().finished_at_ms());
          }
          break;
        default:
          break;
      }
    }
    if (reader.Broken()) break;
  }
  std::vector<std::shared_ptr<ExecState>> sessions;  // still running: they end with the VM
  {
    std::lock_guard lock(mutex_);
    gone_ = true;
    for (auto& [id, state] : execs_) {
      if (!state->done) sessions.push_back(state);
      state->done = true;
    }
    changed_.notify_all();
  }
  for (auto& state : sessions) state->Exited(137);  // killed with the VM
  if (events_.on_vm_exit) events_.on_vm_exit("the microVM's VMM exited");
}

uint64_t MicroVm::NextId() {
  std::lock_guard lock(mutex_);
  return next_id_++;
}

std::optional<std::string> MicroVm::Call(v1::GuestRequest& request, v1::GuestReply* reply) {
  const uint64_t id = NextId();
  request.set_request_id(id);
  const std::string frame = EncodeGuestFrame(request);
  {
    std::lock_guard lock(write_mutex_);
    size_t written = 0;
    while (written < frame.size()) {
      ssize_t n = ::send(channel_, frame.data() + written, frame.size() - written, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::string("the microVM is gone");
      written += static_cast<size_t>(n);
    }
  }
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, std::chrono::seconds(120), [&] { return replies_.count(id) || gone_; })) {
    return std::string("the guest agent did not answer");
  }
  auto it = replies_.find(id);
  if (it == replies_.end()) return std::string("the microVM is gone");
  auto answer = std::move(it->second);
  replies_.erase(it);
  if (!answer->error().empty()) return answer->error();
  if (reply) *reply = *answer;
  return std::nullopt;
}

bool MicroVm::Alive() {
  v1::GuestRequest request;
  request.set_ping(true);
  return !Call(request);
}

std::optional<std::pair<double, double>> MicroVm::Usage(const std::string& name, const std::string& cgroup_path) {
  v1::GuestRequest request;
  request.mutable_usage()->set_name(name);
  request.mutable_usage()->set_cgroup_path(cgroup_path);
  v1::GuestReply reply;
  if (Call(request, &reply)) return std::nullopt;
  return std::make_pair(reply.cpu_seconds(), reply.memory_bytes());
}

ProbeResult MicroVm::Probe(const SocketProbeSpec& spec) {
  v1::GuestRequest request;
  auto* probe = request.mutable_probe();
  probe->set_port(spec.port);
  probe->set_http(spec.http);
  probe->set_path(spec.path);
  probe->set_scheme(spec.scheme);
  for (const auto& [name, value] : spec.headers) {
    auto* header = probe->add_headers();
    header->set_name(name);
    header->set_value(value);
  }
  probe->set_timeout_ms(static_cast<int32_t>(spec.timeout.count()));
  if (auto failed = Call(request)) return {false, *failed};
  return {true, {}};
}

std::optional<std::string> MicroVm::StartContainer(const Start& start) {
  v1::GuestRequest request;
  auto* body = request.mutable_start();
  body->set_name(start.name);
  body->set_bundle(start.bundle);
  body->set_state_dir(start.state_dir);
  body->set_log_path(start.log_path);
  body->set_log_max_bytes(start.log_max_bytes);
  body->set_log_files(start.log_files);
  return Call(request);
}

std::optional<std::string> MicroVm::Signal(const std::string& name, int signal) {
  v1::GuestRequest request;
  request.mutable_signal()->set_name(name);
  request.mutable_signal()->set_signal(signal);
  return Call(request);
}

// An exec session whose process runs in the guest: input, resizes and kills go as requests,
// output and the exit come back through the VM's reader thread.
class MicroVm::RemoteExec : public ExecProcess {
 public:
  RemoteExec(std::shared_ptr<MicroVm> vm, uint64_t id, std::shared_ptr<ExecState> state)
      : holder_(std::move(vm)), vm_(*holder_), id_(id), state_(std::move(state)) {}
  ~RemoteExec() override {
    if (!Done()) Kill();
    {
      std::unique_lock lock(vm_.mutex_);
      vm_.changed_.wait_for(lock, std::chrono::seconds(10), [&] { return state_->done || vm_.gone_; });
      vm_.execs_.erase(id_);
    }
    std::lock_guard lock(state_->callback_mutex);
    state_->detached = true;
  }
  bool Write(std::string_view data) override {
    v1::GuestRequest request;
    request.mutable_exec_input()->set_exec_id(id_);
    request.mutable_exec_input()->set_data(data.data(), data.size());
    return !vm_.Call(request);
  }
  void CloseInput() override {
    v1::GuestRequest request;
    request.mutable_exec_input()->set_exec_id(id_);
    request.mutable_exec_input()->set_close(true);
    (void)vm_.Call(request);
  }
  void Resize(uint16_t rows, uint16_t cols) override {
    v1::GuestRequest request;
    request.mutable_exec_resize()->set_exec_id(id_);
    request.mutable_exec_resize()->set_rows(rows);
    request.mutable_exec_resize()->set_cols(cols);
    (void)vm_.Call(request);
  }
  void Kill() override {
    v1::GuestRequest request;
    request.set_exec_kill(id_);
    (void)vm_.Call(request);
  }
  bool Done() const override {
    std::lock_guard lock(vm_.mutex_);
    return state_->done;
  }

 private:
  std::shared_ptr<MicroVm> holder_;  // the VM object lives while the session does
  MicroVm& vm_;
  uint64_t id_;
  std::shared_ptr<ExecState> state_;
};

void MicroVm::DeliverExec(const v1::GuestMessage& message) {
  const uint64_t id = message.has_exec_output() ? message.exec_output().exec_id() : message.exec_exited().exec_id();
  std::shared_ptr<ExecState> state;
  {
    std::lock_guard lock(mutex_);
    auto it = execs_.find(id);
    if (it != execs_.end()) state = it->second;
  }
  if (!state) return;
  if (message.has_exec_output()) {
    state->Output(message.exec_output().data());
    return;
  }
  {
    std::lock_guard lock(mutex_);  // done before the callback hears of it, as for a local process
    state->done = true;
    changed_.notify_all();
  }
  state->Exited(message.exec_exited().exit_code());
}

std::unique_ptr<ExecProcess> MicroVm::Exec(const std::string& name, const ExecSpec& spec,
                                           const std::string& guest_process_file, ExecCallbacks callbacks,
                                           std::string* error) {
  const uint64_t id = NextId();
  auto state = std::make_shared<ExecState>();
  state->callbacks = std::move(callbacks);
  {
    std::lock_guard lock(mutex_);
    if (gone_) {
      *error = "the microVM is gone";
      return nullptr;
    }
    execs_[id] = state;
  }
  v1::GuestRequest request;
  auto* start = request.mutable_exec_start();
  start->set_exec_id(id);
  start->set_name(name);
  for (const auto& word : spec.command) start->add_command(word);
  start->set_tty(spec.tty);
  start->set_rows(spec.rows);
  start->set_cols(spec.cols);
  start->set_process_file(guest_process_file);
  if (auto failed = Call(request)) {
    *error = *failed;
    std::lock_guard lock(mutex_);
    execs_.erase(id);
    return nullptr;
  }
  return std::make_unique<RemoteExec>(shared_from_this(), id, std::move(state));
}

MicroVm::~MicroVm() {
  Shutdown();
  if (channel_ >= 0) ::close(channel_);
}

void MicroVm::Shutdown() {
  std::lock_guard shutting(shutdown_mutex_);
  if (shut_down_) return;
  shut_down_ = true;
  bool gone;
  {
    std::lock_guard lock(mutex_);
    gone = gone_;
  }
  if (!gone && channel_ >= 0) {
    v1::GuestRequest request;
    request.set_request_id(0);  // no answer awaited: the guest powers off
    request.set_shutdown(true);
    const std::string frame = EncodeGuestFrame(request);
    {
      std::lock_guard lock(write_mutex_);
      (void)::send(channel_, frame.data(), frame.size(), MSG_NOSIGNAL);
    }
    // The guest powers off; QEMU exits on its own (-no-reboot) within a moment.
    for (int i = 0; i < 200 && !Exited(qemu_pid_); ++i) ::usleep(10000);
  }
  if (qemu_pid_ > 0 && ::kill(qemu_pid_, 0) == 0) Stop(qemu_pid_, SIGKILL);
  if (channel_ >= 0) ::shutdown(channel_, SHUT_RDWR);
  if (reader_.joinable()) {
    // The last holder may let go on the reader thread itself (an exec callback): it ends alone.
    if (reader_.get_id() == std::this_thread::get_id()) reader_.detach();
    else reader_.join();
  }
  Stop(virtiofsd_pid_, SIGTERM);
}

}  // namespace skiff::node
