#include "skiff/node/probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>

#include "skiff/containerinstance/v1/container_group.pb.h"

namespace skiff::node {
namespace ci = containerinstance::v1;
using std::chrono::milliseconds;

ProbeSpec ProbeFromModel(const ci::ContainerProbe& probe) {
  ProbeSpec spec;
  if (probe.has_http_get()) {
    spec.kind = ProbeSpec::Kind::kHttpGet;
    spec.port = probe.http_get().port();
    if (!probe.http_get().path().empty()) spec.path = probe.http_get().path();
    if (spec.path.front() != '/') spec.path = "/" + spec.path;
    if (!probe.http_get().scheme().empty()) spec.scheme = probe.http_get().scheme();
    for (const auto& header : probe.http_get().http_headers()) spec.headers.emplace_back(header.name(), header.value());
  } else if (probe.has_tcp_socket()) {
    spec.kind = ProbeSpec::Kind::kTcpSocket;
    spec.port = probe.tcp_socket().port();
  } else {
    spec.kind = ProbeSpec::Kind::kExec;
    spec.command.assign(probe.exec().command().begin(), probe.exec().command().end());
  }
  if (probe.has_initial_delay_seconds()) spec.initial_delay = std::chrono::seconds(std::max(0, probe.initial_delay_seconds()));
  if (probe.has_period_seconds()) spec.period = std::chrono::seconds(std::max(1, probe.period_seconds()));
  if (probe.has_timeout_seconds()) spec.timeout = std::chrono::seconds(std::max(1, probe.timeout_seconds()));
  if (probe.has_failure_threshold()) spec.failure_threshold = std::max(1, probe.failure_threshold());
  if (probe.has_success_threshold()) spec.success_threshold = std::max(1, probe.success_threshold());
  return spec;
}

int ConnectInNamespace(const std::string& netns_path, int port, milliseconds timeout, std::string* error) {
  // A socket belongs to the network namespace of the thread that created it: make it on a
  // short-lived thread that joined the group's namespace, then use it from here.
  int fd = -1;
  std::thread maker([&] {
    if (!netns_path.empty()) {
      int ns = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
        *error = "cannot enter the group's network namespace: " + std::string(std::strerror(errno));
        if (ns >= 0) ::close(ns);
        return;
      }
      ::close(ns);
    }
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) *error = std::string("socket: ") + std::strerror(errno);
  });
  maker.join();
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd waiting{fd, POLLOUT, 0};
    rc = ::poll(&waiting, 1, static_cast<int>(timeout.count()));
    if (rc == 0) {
      *error = "dial tcp 127.0.0.1:" + std::to_string(port) + ": i/o timeout";
      ::close(fd);
      return -1;
    }
    int so_error = 0;
    socklen_t length = sizeof so_error;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length);
    errno = so_error;
    rc = so_error == 0 ? 0 : -1;
  }
  if (rc != 0) {
    *error = "dial tcp 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

namespace {

ProbeResult ExecProbe(SandboxRuntime& runtime, const std::string& sandbox_id, const std::string& container,
                      const ProbeSpec& spec) {
  std::mutex mutex;
  std::condition_variable exited;
  std::optional<int> code;
  std::string output;
  std::string error;
  ExecSpec exec{spec.command, false, 0, 0};
  auto process = runtime.Exec(
      sandbox_id, container, exec,
      {[&](std::string_view data) {
         std::lock_guard lock(mutex);
         if (output.size() < 1024) output.append(data.substr(0, 1024 - output.size()));
       },
       [&](int exit_code) {
         std::lock_guard lock(mutex);
         code = exit_code;
         exited.notify_all();
       }},
      &error);
  if (!process) return {false, "exec probe could not run: " + error};
  process->CloseInput();
  std::unique_lock lock(mutex);
  if (!exited.wait_for(lock, spec.timeout, [&] { return code.has_value(); })) {
    lock.unlock();
    process->Kill();
    process.reset();
    return {false, "command timed out after " + std::to_string(spec.timeout.count()) + "s"};
  }
  const int exit_code = *code;
  const std::string text = output;
  lock.unlock();
  process.reset();
  if (exit_code == 0) return {true, {}};
  return {false, "command exited with code " + std::to_string(exit_code) + (text.empty() ? "" : ": " + text)};
}

ProbeResult SocketProbe(SandboxRuntime& runtime, const std::string& sandbox_id, const ProbeSpec& spec) {
  std::string error;
  const auto deadline = std::chrono::steady_clock::now() + spec.timeout;
  int fd = ConnectInNamespace(runtime.NetworkNamespace(sandbox_id), spec.port,
                              std::chrono::duration_cast<milliseconds>(spec.timeout), &error);
  if (fd < 0) return {false, error};
  if (spec.kind == ProbeSpec::Kind::kTcpSocket) {
    ::close(fd);
    return {true, {}};
  }
  if (spec.scheme == "https" || spec.scheme == "HTTPS") {
    ::close(fd);
    return {false, "https probes are not supported on this node"};
  }
  std::string request = "GET " + spec.path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(spec.port) +
                        "\r\nUser-Agent: skiff-probe/1.0\r\nAccept: */*\r\nConnection: close\r\n";
  for (const auto& [name, value] : spec.headers) request += name + ": " + value + "\r\n";
  request += "\r\n";
  auto remaining = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  };
  size_t sent = 0;
  while (sent < request.size()) {
    pollfd waiting{fd, POLLOUT, 0};
    if (::poll(&waiting, 1, remaining()) <= 0) break;
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string response;
  while (response.find("\r\n") == std::string::npos && response.size() < 4096) {
    pollfd waiting{fd, POLLIN, 0};
    if (::poll(&waiting, 1, remaining()) <= 0) break;
    char buffer[1024];
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  // "HTTP/1.1 200 OK"
  if (response.rfind("HTTP/", 0) != 0 || response.find(' ') == std::string::npos) {
    return {false, sent < request.size() || response.empty() ? "no HTTP response within the timeout"
                                                              : "the answer is not HTTP"};
  }
  int status = std::atoi(response.c_str() + response.find(' ') + 1);
  if (status >= 200 && status < 400) return {true, {}};
  return {false, "HTTP probe failed with statuscode: " + std::to_string(status)};
}

}  // namespace

ProbeResult RunProbe(SandboxRuntime& runtime, const std::string& sandbox_id, const std::string& container,
                     const ProbeSpec& spec) {
  if (spec.kind == ProbeSpec::Kind::kExec) return ExecProbe(runtime, sandbox_id, container, spec);
  return SocketProbe(runtime, sandbox_id, spec);
}

SandboxProbeRunner::~SandboxProbeRunner() {
  std::lock_guard lock(mutex_);
  for (auto& [key, probe] : running_) probe.thread.join();
  for (auto& probe : forgotten_) probe.thread.join();
}

void SandboxProbeRunner::Start(const std::string& key, const std::string& sandbox_id, const std::string& container,
                               const ProbeSpec& spec) {
  std::lock_guard lock(mutex_);
  ReapForgotten();
  if (running_.count(key)) return;
  std::packaged_task<ProbeResult()> task(
      [this, sandbox_id, container, spec] { return RunProbe(runtime_, sandbox_id, container, spec); });
  Running probe;
  probe.result = task.get_future();
  probe.thread = std::thread(std::move(task));
  running_.emplace(key, std::move(probe));
}

std::optional<ProbeResult> SandboxProbeRunner::Poll(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = running_.find(key);
  if (it == running_.end() || it->second.result.wait_for(milliseconds(0)) != std::future_status::ready) {
    return std::nullopt;
  }
  ProbeResult result = it->second.result.get();
  it->second.thread.join();
  running_.erase(it);
  return result;
}

void SandboxProbeRunner::Forget(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = running_.find(key);
  if (it == running_.end()) return;
  forgotten_.push_back(std::move(it->second));
  running_.erase(it);
}

void SandboxProbeRunner::ReapForgotten() {
  for (auto it = forgotten_.begin(); it != forgotten_.end();) {
    if (it->result.wait_for(milliseconds(0)) == std::future_status::ready) {
      it->thread.join();
      it = forgotten_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace skiff::node
