#include "skiff/node/restart_policy.h"

#include <algorithm>

namespace skiff::node {

RestartPolicy ParseRestartPolicy(const std::string& text) {
  if (text == "Never") return RestartPolicy::kNever;
  if (text == "OnFailure") return RestartPolicy::kOnFailure;
  return RestartPolicy::kAlways;
}

std::optional<RestartTracker::Clock::time_point> RestartTracker::Exited(int exit_code, Clock::time_point at) {
  bool restart = policy_ == RestartPolicy::kAlways || (policy_ == RestartPolicy::kOnFailure && exit_code != 0);
  if (!restart) return std::nullopt;
  if (at - started_at_ >= options_.reset_after) backoff_ = std::chrono::milliseconds(0);  // it ran long enough
  backoff_ = backoff_.count() == 0 ? options_.initial : std::min(backoff_ * 2, options_.cap);
  ++restart_count_;
  return at + backoff_;
}

std::string GroupState(bool any_running, bool any_will_restart, bool any_failed, bool stopped, bool pending) {
  if (stopped) return "Stopped";
  if (pending) return "Pending";
  if (any_running || any_will_restart) return "Running";
  return any_failed ? "Failed" : "Succeeded";
}

}  // namespace skiff::node
