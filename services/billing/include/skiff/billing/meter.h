#pragma once

// The metering state machine: pure, no I/O, no clock of its own. Each group has one GroupMeter;
// each lifecycle signal moves it and may close a billed interval. The rules (docs/architecture.md,
// "Billing") give every odd input a defined result: duplicates are dropped before they get here
// (by event id), a stale copy's events are ignored by placement generation, a stop that comes
// before its start closes the interval when the start arrives, and no group-second is billed twice.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace skiff::billing {

using Millis = int64_t;  // milliseconds since the Unix epoch

struct Resources {
  double vcpu = 0;
  double memory_gb = 0;
  int gpu = 0;
  bool spot = false;
  bool operator==(const Resources&) const = default;
};

// What billing remembers about one group between events (one Postgres row).
struct GroupMeter {
  std::string group_id;
  std::string subscription_id;
  std::string resource_group;
  std::string name;
  Resources resources;
  int64_t placement_generation = 0;   // of the copy being billed; older copies are ignored
  std::string node_id;
  std::optional<Millis> open_since;   // set while billing runs
  std::string open_event_id;
  Millis last_seen = 0;               // latest evidence the open copy ran (events, heartbeats)
  Millis last_change = 0;             // time of the last transition applied
  std::optional<Millis> unmatched_stop;  // a stop that came with nothing open (its start may be late)
  std::string unmatched_stop_event_id;
  std::string unmatched_stop_reason;
  Millis billed_until = 0;            // end of the last closed interval: never bill a second twice
  bool deleted = false;
};

struct Interval {
  std::string group_id;
  std::string subscription_id;
  std::string resource_group;
  std::string name;
  std::string node_id;
  Resources resources;
  Millis start = 0;
  Millis end = 0;
  std::string start_event_id;
  std::string end_event_id;
  std::string end_reason;
};

// The interval `meter` has open, as if it ended at `end` (not before its start).
Interval OpenInterval(const GroupMeter& meter, Millis end);

enum class SignalKind {
  kSpec,     // the gateway's Created/Updated: who the group is and what it asks for
  kPull,     // an image pull began (opens the interval under ACI's rule)
  kStart,    // a container started / the group is Running
  kStop,     // the group ended or was stopped, or its copy was removed
  kDeleted,  // the user deleted the group
  kLost,     // its copy stopped without telling us: node lost (close at last evidence)
};

struct Signal {
  SignalKind kind = SignalKind::kStart;
  std::string event_id;
  Millis at = 0;                      // the event's own time (a node's clock)
  int64_t placement_generation = 0;   // 0: not from a placed copy (gateway events)
  std::string node_id;
  std::string reason;                 // for stops: Stopped, Succeeded, Failed, Deleted, ...
  // kSpec only:
  std::string subscription_id, resource_group, name;
  Resources resources;
};

struct MeterOptions {
  bool bill_from_pull = false;        // ACI's rule: from the start of the image pull
  Millis max_future_skew = 5000;      // event times later than receipt + this are clamped
};

class Meter {
 public:
  explicit Meter(MeterOptions options = {}) : options_(options) {}
  // Applies one signal received at `received_at` (billing's clock) and returns the intervals it
  // closed (at most two: a spec change closes one and opens the next).
  std::vector<Interval> Apply(GroupMeter& meter, const Signal& signal, Millis received_at) const;
  // Evidence from a heartbeat that the copy at `placement_generation` still exists at `at`.
  static void Seen(GroupMeter& meter, int64_t placement_generation, Millis at);

 private:
  std::optional<Interval> Close(GroupMeter& meter, Millis at, const std::string& event_id,
                                const std::string& reason) const;
  void Open(GroupMeter& meter, Millis at, const std::string& event_id, const std::string& node_id) const;
  MeterOptions options_;
};

}  // namespace skiff::billing
