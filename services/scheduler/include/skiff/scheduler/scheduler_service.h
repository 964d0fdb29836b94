#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "skiff/containerinstance/v1/container_group.pb.h"
#include "skiff/events/v1/group_events.pb.h"
#include "skiff/node/v1/node.pb.h"
#include "skiff/scheduler/placement.h"
#include "skiff/scheduler/scheduler_store.h"
#include "skiff/scheduler/v1/scheduler.pb.h"

namespace skiff::scheduler {

// The sums a group asks of a node: container requests (limits default to requests), its OS,
// zones, public ports and priority.
GroupDemand DemandOf(const std::string& group_id, const containerinstance::v1::ContainerGroup& spec);

struct SchedulerOptions {
  std::chrono::milliseconds node_lost_after{10000};
  // A group that fits no node waits this long for capacity, then fails (ServiceUnavailable).
  std::chrono::milliseconds pending_timeout{std::chrono::minutes(10)};
  // How often a replica re-reads nodes and waiting groups, to see what other replicas did.
  std::chrono::milliseconds refresh_interval{5000};
  int commit_attempts = 5;
};

// The scheduler's logic, one actor: the service calls it from a single thread (the loop in
// main.cpp), so the placement core needs no locks. Replicas run side by side; the store's
// optimistic concurrency keeps them from over-committing a node or placing a group twice.
class SchedulerService {
 public:
  using Clock = std::function<TimePoint()>;
  using NewId = std::function<std::string()>;
  SchedulerService(PlacementPolicy& placement, SchedulerStore& store, NodeCommands& nodes, Clock clock, NewId new_id,
                   SchedulerOptions options);

  // Loads the nodes and the groups waiting for capacity.
  void Start();
  // A batch from SKIFF_EVENTS (created, updated, deleted); returns once the store has it.
  void HandleGroupEvents(const std::vector<events::v1::GroupEvent>& events);
  void HandleHeartbeat(const node::v1::NodeHeartbeat& heartbeat);
  // A group's runtime state from its node (skiff.events.sandbox.state): a group that ended
  // (Succeeded, Failed, Stopped) gives its reservation back; one running again takes it again.
  void HandleSandboxEvent(const node::v1::ContainerEvent& event);
  // Node loss, waiting groups and their time-outs, the periodic refresh.
  void Tick();

  v1::NodesReply Nodes() const;
  v1::NodeAdminReply Cordon(const std::string& node_id);
  v1::NodeAdminReply Uncordon(const std::string& node_id);
  // Cordons the node and moves its groups to other nodes (started there, then stopped here).
  v1::NodeAdminReply Drain(const std::string& node_id);

  size_t WaitingCount() const;

 private:
  struct Candidate {
    GroupRecord record;
    int64_t expected_generation = -1;  // as read; -1: not stored yet
    std::string moving_from;           // drain: still runs there until it runs elsewhere
  };
  struct AfterCommit {
    std::vector<std::function<void()>> actions;
  };
  // One scheduling pass over `candidates`: decide, commit, and on success tell the nodes.
  // Returns the ids placed. Conflicts reload what changed and retry.
  std::vector<std::string> PlacePass(std::vector<Candidate> candidates);
  void PlaceWaiting();
  void HandleNodeLost(const std::string& node_id);
  void ReloadNode(const std::string& node_id);
  void Refresh();
  OutboxEvent Event(const GroupRecord& group, const std::string& kind, const std::string& node_id,
                    const std::string& reason, const std::string& message);
  bool CommitWithRetry(const std::function<WriteSet()>& build, std::vector<std::string>* conflicting_groups);

  PlacementPolicy& placement_;
  SchedulerStore& store_;
  NodeCommands& nodes_;
  Clock clock_;
  NewId new_id_;
  SchedulerOptions options_;
  std::map<std::string, Candidate> waiting_;  // group id -> group waiting for capacity
  std::map<std::string, GroupRecord> placed_;  // groups this replica knows to be placed
  std::map<std::string, TimePoint> last_seen_;
  std::map<std::string, TimePoint> registered_at_;
  std::map<std::string, TimePoint> fenced_;  // node/group -> when we last told it to drop a stale copy
  TimePoint started_{}, last_refresh_{};
};

}  // namespace skiff::scheduler
