#include "skiff/node/probe.h"

#include <condition_variable>

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
  SocketProbeSpec socket;
  socket.port = spec.port;
  socket.http = spec.kind == ProbeSpec::Kind::kHttpGet;
  socket.path = spec.path;
  socket.scheme = spec.scheme;
  socket.headers = spec.headers;
  socket.timeout = std::chrono::duration_cast<milliseconds>(spec.timeout);
  // A microVM's containers listen on the guest's localhost, which only its agent can reach.
  if (auto inside = runtime.ProbeInside(sandbox_id, socket)) return *inside;
  return ProbeSocket(runtime.NetworkNamespace(sandbox_id), socket);
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
