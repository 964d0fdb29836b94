#pragma once

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "skiff/node/sandbox_runtime.h"
#include "skiff/node/socket_probe.h"

namespace skiff::containerinstance::v1 {
class ContainerProbe;
}

namespace skiff::node {

// A liveness or readiness probe, as ACI and Kubernetes define it (tcpSocket is Skiff's addition).
struct ProbeSpec {
  enum class Kind { kExec, kHttpGet, kTcpSocket };
  Kind kind = Kind::kExec;
  std::vector<std::string> command;  // exec
  std::string path = "/";            // httpGet
  std::string scheme = "http";       // http | https
  std::vector<std::pair<std::string, std::string>> headers;
  int port = 0;                      // httpGet, tcpSocket
  std::chrono::seconds initial_delay{0};
  std::chrono::seconds period{10};
  std::chrono::seconds timeout{1};
  int failure_threshold = 3;
  int success_threshold = 1;
};

// The ACI model's probe with Kubernetes' defaults for what it leaves out.
ProbeSpec ProbeFromModel(const containerinstance::v1::ContainerProbe& probe);

// Runs probes off the supervisor's thread: Start returns at once, Poll hands over the result once
// the probe finished (and forgets it). Forget drops a probe whose answer is no longer wanted.
class ProbeRunner {
 public:
  virtual ~ProbeRunner() = default;
  virtual void Start(const std::string& key, const std::string& sandbox_id, const std::string& container,
                     const ProbeSpec& spec) = 0;
  virtual std::optional<ProbeResult> Poll(const std::string& key) = 0;
  virtual void Forget(const std::string& key) = 0;
};

// Probes a container for real: exec through the runtime, tcpSocket and httpGet against
// 127.0.0.1 inside the group's network namespace (what the containers share), each on a thread
// of its own.
class SandboxProbeRunner : public ProbeRunner {
 public:
  explicit SandboxProbeRunner(SandboxRuntime& runtime) : runtime_(runtime) {}
  ~SandboxProbeRunner() override;
  void Start(const std::string& key, const std::string& sandbox_id, const std::string& container,
             const ProbeSpec& spec) override;
  std::optional<ProbeResult> Poll(const std::string& key) override;
  void Forget(const std::string& key) override;

 private:
  struct Running {
    std::future<ProbeResult> result;
    std::thread thread;
  };
  void ReapForgotten();
  SandboxRuntime& runtime_;
  std::mutex mutex_;
  std::map<std::string, Running> running_;
  std::vector<Running> forgotten_;
};

// One probe, synchronously (what SandboxProbeRunner runs on its threads).
ProbeResult RunProbe(SandboxRuntime& runtime, const std::string& sandbox_id, const std::string& container,
                     const ProbeSpec& spec);

}  // namespace skiff::node
