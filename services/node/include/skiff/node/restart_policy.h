#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace skiff::node {

enum class RestartPolicy { kAlways, kOnFailure, kNever };
RestartPolicy ParseRestartPolicy(const std::string& text);  // ACI spelling; unknown -> Always

// When a container that exited should start again, as Kubernetes and ACI do it: Always
// restarts every exit, OnFailure only non-zero exits, Never none. Back-off doubles from
// `initial` up to `cap` per consecutive restart and resets once a run lasted `reset_after`.
class RestartTracker {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::chrono::milliseconds initial{10000};
    std::chrono::milliseconds cap{300000};
    std::chrono::milliseconds reset_after{600000};
  };

  RestartTracker(RestartPolicy policy, Options options) : policy_(policy), options_(options) {}

  void Started(Clock::time_point at) { started_at_ = at; }
  // Called when the container exited. Returns when to start it again, or nullopt to leave it
  // terminated. Counts the restart.
  std::optional<Clock::time_point> Exited(int exit_code, Clock::time_point at);

  // Carries the count and back-off over a node restart.
  void Restore(int restart_count, std::chrono::milliseconds backoff) {
    restart_count_ = restart_count;
    backoff_ = backoff;
  }
  int restart_count() const { return restart_count_; }
  std::chrono::milliseconds current_backoff() const { return backoff_; }

 private:
  RestartPolicy policy_;
  Options options_;
  Clock::time_point started_at_{};
  std::chrono::milliseconds backoff_{0};
  int restart_count_ = 0;
};

// The group's state from its containers', as ACI reports it: Running while any app container
// runs or will restart; Succeeded when all app containers exited 0 and none restarts; Failed
// when one exited non-zero and will not restart; Stopped when the user stopped it.
std::string GroupState(bool any_running, bool any_will_restart, bool any_failed, bool stopped, bool pending);

}  // namespace skiff::node
