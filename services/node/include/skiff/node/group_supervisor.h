#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "skiff/node/probe.h"
#include "skiff/node/restart_policy.h"
#include "skiff/node/sandbox_runtime.h"

namespace skiff::node {

// A container's view, as ACI's instanceView shows it.
struct ContainerStatus {
  std::string state = "Waiting";  // Waiting | Running | Terminated
  std::string detail;             // e.g. CrashLoopBackOff, OOMKilled, Completed, Error
  int restart_count = 0;
  std::optional<int> exit_code;
  std::string start_time;
  std::string finish_time;
  bool ready = false;  // running and, when it has a readiness probe, passing it
};

struct SupervisorEvent {
  std::string group_id;
  std::string container;  // empty for group-level events
  std::string name;       // Started, Killing, BackOff, OOMKilled, Terminated, ... (ACI's names)
  std::string message;
  std::string type;       // Normal | Warning
};

class SupervisorSink {
 public:
  virtual ~SupervisorSink() = default;
  virtual void Event(const SupervisorEvent& event) = 0;
  virtual void GroupStateChanged(const std::string& group_id, const std::string& state) = 0;
  // A container's restart count or back-off changed (kept so a node restart does not reset them).
  virtual void RestartsChanged(const std::string& group_id, const std::string& container, int restart_count,
                               std::chrono::milliseconds backoff) {}
};

struct RestartRecord {
  int restart_count = 0;
  std::chrono::milliseconds backoff{0};
};

struct GroupPlan {
  SandboxSpec sandbox;
  RestartPolicy restart_policy = RestartPolicy::kAlways;
  std::vector<ContainerLaunch> init_containers;  // run to completion, in order, first
  std::vector<ContainerLaunch> containers;
  RestartTracker::Options backoff;
  std::chrono::milliseconds stop_grace{10000};
  // After a node restart: containers that still run, or ended meanwhile, are adopted, not rerun.
  bool adopt_existing = false;
  // Restart counts and back-off from before a node restart, by container name.
  std::map<std::string, RestartRecord> restored_restarts;
  // Probes by container name.
  std::map<std::string, ProbeSpec> liveness;
  std::map<std::string, ProbeSpec> readiness;
};

// Drives one group through its lifecycle on a SandboxRuntime: init containers in order, then
// the app containers with the restart policy and back-off; stop with SIGTERM, a grace period,
// then SIGKILL. A step function: Tick() looks at the runtime and the clock and acts, so it is
// tested with a fake runtime and a fake clock, and re-adopts whatever the runtime already runs.
class GroupSupervisor {
 public:
  using Clock = std::chrono::steady_clock;
  // `probes` runs the plan's probes; without it they are not run.
  GroupSupervisor(GroupPlan plan, SandboxRuntime& runtime, SupervisorSink& sink, ProbeRunner* probes = nullptr);
  ~GroupSupervisor();

  void Tick(Clock::time_point now);
  void Stop(Clock::time_point now);
  // Stops, then removes the sandbox when everything has exited. True once removed.
  bool Deleted() const { return deleted_; }
  void Delete(Clock::time_point now);

  std::string State() const { return state_; }
  // A stop was asked for (it may still be waiting for the containers to end).
  bool StopRequested() const { return stopped_by_user_; }
  // Nothing runs and nothing will start by itself (stopped, or ended for good).
  bool Quiet() const;
  const std::map<std::string, ContainerStatus>& Containers() const { return status_; }
  const std::string& group_id() const { return plan_.sandbox.id; }

 private:
  enum class Phase { kCreate, kInit, kApps, kStopping, kStopped };
  struct ProbeState {
    std::optional<Clock::time_point> next_at;
    bool in_flight = false;
    int failures = 0;
    int successes = 0;
    std::string key;
  };
  struct Track {
    RestartTracker tracker;
    std::optional<Clock::time_point> next_start;
    bool running = false;
    bool seen_once = false;
    int generation = 0;                         // runs started: tells a stale probe answer apart
    std::optional<Clock::time_point> kill_at;   // SIGKILL after a failed liveness probe's grace
    ProbeState liveness;
    ProbeState readiness;
  };

  void Emit(const std::string& container, const std::string& name, const std::string& message, bool warning = false);
  bool StartOne(const ContainerLaunch& launch, Clock::time_point now);
  // Polls one running container; returns its exit when it ended now.
  std::optional<ContainerExit> Reap(const std::string& name);
  void UpdateState();
  void RecordRestarts(const std::string& name);
  void ResetProbes(const std::string& name, Clock::time_point now);
  void ForgetProbes(const std::string& name);
  void RunProbes(const std::string& name, Clock::time_point now);
  void RunProbe(const std::string& name, bool liveness, const ProbeSpec& spec, ProbeState& state,
                Clock::time_point now);

  GroupPlan plan_;
  SandboxRuntime& runtime_;
  SupervisorSink& sink_;
  ProbeRunner* probes_;
  Phase phase_ = Phase::kCreate;
  size_t init_index_ = 0;
  std::map<std::string, ContainerStatus> status_;
  std::map<std::string, Track> tracks_;
  std::optional<Clock::time_point> kill_at_;
  bool delete_requested_ = false;
  bool deleted_ = false;
  bool failed_ = false;
  bool stopped_by_user_ = false;
  std::string state_ = "Pending";
};

}  // namespace skiff::node
