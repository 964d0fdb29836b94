#include "skiff/node/group_supervisor.h"

#include <csignal>

#include "skiff/node/shim.h"

namespace skiff::node {

GroupSupervisor::GroupSupervisor(GroupPlan plan, SandboxRuntime& runtime, SupervisorSink& sink, ProbeRunner* probes)
    : plan_(std::move(plan)), runtime_(runtime), sink_(sink), probes_(probes) {
  for (const auto* list : {&plan_.init_containers, &plan_.containers}) {
    const RestartPolicy policy = list == &plan_.init_containers && plan_.restart_policy == RestartPolicy::kAlways
                                     ? RestartPolicy::kOnFailure  // an init container that succeeded is done
                                     : plan_.restart_policy;
    for (const auto& launch : *list) {
      status_[launch.container_name] = ContainerStatus{};
      auto& track = tracks_.emplace(launch.container_name, Track{RestartTracker(policy, plan_.backoff)}).first->second;
      if (auto it = plan_.restored_restarts.find(launch.container_name); it != plan_.restored_restarts.end()) {
        track.tracker.Restore(it->second.restart_count, it->second.backoff);
        status_[launch.container_name].restart_count = it->second.restart_count;
      }
    }
  }
}

void GroupSupervisor::RecordRestarts(const std::string& name) {
  const auto& tracker = tracks_.at(name).tracker;
  sink_.RestartsChanged(plan_.sandbox.id, name, tracker.restart_count(), tracker.current_backoff());
}

GroupSupervisor::~GroupSupervisor() {
  for (const auto& [name, track] : tracks_) ForgetProbes(name);
}

void GroupSupervisor::ResetProbes(const std::string& name, Clock::time_point now) {
  ForgetProbes(name);
  auto& track = tracks_.at(name);
  ++track.generation;
  track.kill_at.reset();
  track.liveness = {};
  track.readiness = {};
  if (auto it = plan_.liveness.find(name); it != plan_.liveness.end()) track.liveness.next_at = now + it->second.initial_delay;
  if (auto it = plan_.readiness.find(name); it != plan_.readiness.end()) {
    track.readiness.next_at = now + it->second.initial_delay;
  }
  status_[name].ready = !plan_.readiness.count(name);
}

void GroupSupervisor::ForgetProbes(const std::string& name) {
  auto& track = tracks_.at(name);
  for (auto* state : {&track.liveness, &track.readiness}) {
    if (state->in_flight && probes_) probes_->Forget(state->key);
    state->in_flight = false;
    state->next_at.reset();
  }
}

void GroupSupervisor::RunProbes(const std::string& name, Clock::time_point now) {
  auto& track = tracks_.at(name);
  if (track.kill_at && now >= *track.kill_at) {
    runtime_.Signal(plan_.sandbox.id, name, SIGKILL);
    track.kill_at.reset();
  }
  if (!probes_) return;
  if (auto it = plan_.liveness.find(name); it != plan_.liveness.end()) RunProbe(name, true, it->second, track.liveness, now);
  if (auto it = plan_.readiness.find(name); it != plan_.readiness.end()) {
    RunProbe(name, false, it->second, track.readiness, now);
  }
}

void GroupSupervisor::RunProbe(const std::string& name, bool liveness, const ProbeSpec& spec, ProbeState& state,
                               Clock::time_point now) {
  auto& track = tracks_.at(name);
  auto& status = status_[name];
  if (state.in_flight) {
    auto result = probes_->Poll(state.key);
    if (!result) return;
    state.in_flight = false;
    state.next_at = now + spec.period;
    if (result->success) {
      state.failures = 0;
      if (++state.successes >= spec.success_threshold && !liveness) status.ready = true;
      return;
    }
    state.successes = 0;
    ++state.failures;
    Emit(name, "Unhealthy", std::string(liveness ? "Liveness" : "Readiness") + " probe failed: " + result->message,
         true);
    if (state.failures < spec.failure_threshold) return;
    state.failures = 0;
    if (!liveness) {
      status.ready = false;
      return;
    }
    // As Kubernetes: a container that fails its liveness probe is stopped (SIGTERM, then SIGKILL
    // after the grace period) and its restart policy decides what follows.
    Emit(name, "Killing", "Container " + name + " failed liveness probe, will be restarted");
    runtime_.Signal(plan_.sandbox.id, name, SIGTERM);
    track.kill_at = now + plan_.stop_grace;
    state.next_at.reset();
    return;
  }
  if (state.next_at && now >= *state.next_at && !track.kill_at) {
    state.key = plan_.sandbox.id + "/" + name + (liveness ? "/liveness/" : "/readiness/") +
                std::to_string(track.generation);
    probes_->Start(state.key, plan_.sandbox.id, name, spec);
    state.in_flight = true;
  }
}

void GroupSupervisor::Emit(const std::string& container, const std::string& name, const std::string& message,
                           bool warning) {
  sink_.Event({plan_.sandbox.id, container, name, message, warning ? "Warning" : "Normal"});
}

bool GroupSupervisor::StartOne(const ContainerLaunch& launch, Clock::time_point now) {
  const std::string& name = launch.container_name;
  auto& status = status_[name];
  auto& track = tracks_.at(name);
  const bool first_look = !track.seen_once;
  track.seen_once = true;
  if (first_look && plan_.adopt_existing) {
    // First look after a node restart: a container that still runs, or that ended while the
    // node was away, is adopted rather than started again.
    if (runtime_.IsRunning(plan_.sandbox.id, name) || runtime_.ExitOf(plan_.sandbox.id, name)) {
      track.running = true;
      track.tracker.Started(now);  // it ran at least since now: back-off is not reset too early
      status.state = "Running";
      ResetProbes(name, now);
      return true;
    }
  }
  runtime_.RemoveContainer(plan_.sandbox.id, name);
  if (auto error = runtime_.StartContainer(plan_.sandbox.id, launch)) {
    status.state = "Waiting";
    status.detail = "StartError";
    Emit(name, "Failed", "Failed to start container " + name + ": " + *error, true);
    // Treated like an immediate non-zero exit, so the restart policy and back-off apply.
    auto next = track.tracker.Exited(128, now);
    track.next_start = next;
    status.restart_count = track.tracker.restart_count();
    RecordRestarts(name);
    if (!next) {
      status.state = "Terminated";
      status.exit_code = 128;
      failed_ = true;
    }
    return false;
  }
  track.tracker.Started(now);
  track.running = true;
  track.next_start.reset();
  ResetProbes(name, now);
  status.state = "Running";
  status.detail.clear();
  status.exit_code.reset();
  status.start_time = NowRfc3339();
  status.finish_time.clear();
  Emit(name, "Started", "Started container " + name);
  return true;
}

std::optional<ContainerExit> GroupSupervisor::Reap(const std::string& name) {
  auto& track = tracks_.at(name);
  if (!track.running) return std::nullopt;
  auto exit = runtime_.ExitOf(plan_.sandbox.id, name);
  if (!exit) return std::nullopt;
  track.running = false;
  ForgetProbes(name);
  track.kill_at.reset();
  auto& status = status_[name];
  status.ready = false;
  status.state = "Terminated";
  status.exit_code = exit->oom_killed ? 137 : exit->exit_code;
  status.finish_time = exit->finished_at;
  status.detail = !exit->reason.empty() ? exit->reason
                  : exit->oom_killed       ? "OOMKilled"
                  : exit->exit_code == 0   ? "Completed"
                                           : "Error";
  if (exit->oom_killed) {
    Emit(name, "OOMKilled", "Container " + name + " exceeded its memory limit and was killed", true);
  }
  if (!exit->reason.empty()) Emit(name, exit->reason, "Container " + name + ": " + exit->message, true);
  Emit(name, "Terminated", "Container " + name + " exited with code " + std::to_string(*status.exit_code),
       *status.exit_code != 0);
  return ContainerExit{*status.exit_code, exit->finished_at, exit->oom_killed, exit->reason, exit->message};
}

void GroupSupervisor::Tick(Clock::time_point now) {
  if (deleted_) return;
  switch (phase_) {
    case Phase::kCreate: {
      if (auto error = runtime_.CreateSandbox(plan_.sandbox)) {
        Emit("", "Failed", "Failed to create the sandbox: " + *error, true);
        failed_ = true;
        phase_ = Phase::kStopped;
        break;
      }
      phase_ = plan_.init_containers.empty() ? Phase::kApps : Phase::kInit;
      Tick(now);
      return;
    }
    case Phase::kInit: {
      const auto& launch = plan_.init_containers[init_index_];
      auto& track = tracks_.at(launch.container_name);
      if (!track.running) {
        if (!track.next_start || *track.next_start <= now) {
          if (status_[launch.container_name].state == "Terminated" && failed_) break;
          StartOne(launch, now);
        }
        break;
      }
      if (auto exit = Reap(launch.container_name)) {
        if (exit->exit_code == 0) {
          if (++init_index_ == plan_.init_containers.size()) phase_ = Phase::kApps;
        } else if (auto next = track.tracker.Exited(exit->exit_code, now)) {
          track.next_start = next;
          status_[launch.container_name].restart_count = track.tracker.restart_count();
          RecordRestarts(launch.container_name);
          Emit(launch.container_name, "BackOff", "Back-off restarting failed init container " + launch.container_name,
               true);
        } else {
          failed_ = true;  // an init container that fails for good fails the group
          phase_ = Phase::kStopped;
        }
      }
      break;
    }
    case Phase::kApps: {
      for (const auto& launch : plan_.containers) {
        const std::string& name = launch.container_name;
        auto& track = tracks_.at(name);
        auto& status = status_[name];
        if (track.running) {
          if (auto exit = Reap(name)) {
            if (auto next = track.tracker.Exited(exit->exit_code, now)) {
              track.next_start = next;
              status.restart_count = track.tracker.restart_count();
              RecordRestarts(name);
              status.detail = "CrashLoopBackOff";
              Emit(name, "BackOff", "Back-off restarting container " + name, true);
            } else if (exit->exit_code != 0) {
              failed_ = true;
            }
          } else {
            RunProbes(name, now);
          }
        } else if (status.state == "Waiting" && (!track.next_start || *track.next_start <= now)) {
          StartOne(launch, now);
        } else if (status.state == "Terminated" && track.next_start && *track.next_start <= now) {
          StartOne(launch, now);
        }
      }
      break;
    }
    case Phase::kStopping: {
      bool any_running = false;
      for (auto& [name, track] : tracks_) {
        if (track.running) {
          Reap(name);
          any_running |= track.running;
        }
      }
      if (any_running && kill_at_ && now >= *kill_at_) {
        for (auto& [name, track] : tracks_) {
          if (track.running) runtime_.Signal(plan_.sandbox.id, name, SIGKILL);
        }
        kill_at_.reset();
      }
      if (!any_running) phase_ = Phase::kStopped;
      break;
    }
    case Phase::kStopped:
      break;
  }
  if (phase_ == Phase::kStopped && delete_requested_) {
    runtime_.DeleteSandbox(plan_.sandbox.id);
    deleted_ = true;
  }
  UpdateState();
}

void GroupSupervisor::Stop(Clock::time_point now) {
  if (phase_ == Phase::kStopped || phase_ == Phase::kStopping) return;
  bool any = false;
  for (auto& [name, track] : tracks_) {
    track.next_start.reset();
    if (track.running) {
      Emit(name, "Killing", "Stopping container " + name);
      runtime_.Signal(plan_.sandbox.id, name, SIGTERM);
      any = true;
    }
  }
  kill_at_ = now + plan_.stop_grace;
  phase_ = any ? Phase::kStopping : Phase::kStopped;
  stopped_by_user_ = true;
  Tick(now);
}

void GroupSupervisor::Delete(Clock::time_point now) {
  delete_requested_ = true;
  if (phase_ == Phase::kCreate) phase_ = Phase::kStopped;
  Stop(now);
  Tick(now);
}

bool GroupSupervisor::Quiet() const {
  if (phase_ == Phase::kStopped) return true;
  if (phase_ != Phase::kApps) return false;
  for (const auto& [name, track] : tracks_) {
    if (track.running || track.next_start || status_.at(name).state == "Waiting") return false;
  }
  return true;
}

void GroupSupervisor::UpdateState() {
  bool any_running = false, any_will_restart = false, any_failed = failed_;
  for (const auto& launch : plan_.containers) {
    const auto& track = tracks_.at(launch.container_name);
    const auto& status = status_.at(launch.container_name);
    any_running |= track.running;
    any_will_restart |= track.next_start.has_value() || status.state == "Waiting";
    any_failed |= status.state == "Terminated" && status.exit_code.value_or(0) != 0 && !track.next_start;
  }
  bool pending = phase_ == Phase::kCreate || phase_ == Phase::kInit;
  std::string state = GroupState(any_running, any_will_restart && phase_ == Phase::kApps, any_failed,
                                 stopped_by_user_ && phase_ == Phase::kStopped, pending);
  if (phase_ == Phase::kStopped && !stopped_by_user_ && failed_) state = "Failed";
  if (state != state_) {
    state_ = state;
    sink_.GroupStateChanged(plan_.sandbox.id, state_);
  }
}

}  // namespace skiff::node
