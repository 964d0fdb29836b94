#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "skiff/events/v1/group_events.pb.h"
#include "skiff/scheduler/placement.h"

namespace skiff::scheduler {

using TimePoint = std::chrono::system_clock::time_point;

// One group as the scheduler keeps it (scheduler.groups).
struct GroupRecord {
  events::v1::GroupRef ref;
  std::string spec;                  // serialized ContainerGroup, secrets sealed
  std::string causation_id;
  std::string state = "Waiting";     // Waiting | Placed | Ended (on its node, holding nothing) | Failed | Deleted
  std::string node_id;               // while Placed
  int64_t placement_generation = 0;  // fencing token; bumped whenever the group is (un)placed
  TimePoint waiting_since{};
  std::string reason;                // why it waits or failed
  bool waiting_announced = false;    // a Waiting event went out for this wait
};

struct OutboxEvent {
  std::string event_id;
  std::string subject;
  std::string payload;
};

// Everything one scheduling pass changes, written in one transaction or not at all. Each group
// write names the placement generation it read (-1: the row must not exist yet) and each touched
// node the version it read; the store bumps the versions. A mismatch is a conflict: another
// replica got there first (optimistic concurrency, as Omega), and nothing is written.
struct WriteSet {
  struct GroupWrite {
    GroupRecord record;
    int64_t expected_generation = -1;
  };
  std::vector<GroupWrite> groups;
  std::map<std::string, int64_t> node_versions;  // node -> version read
  std::vector<OutboxEvent> events;
};

struct CommitResult {
  bool ok = false;
  std::vector<std::string> conflicting_nodes;
  std::vector<std::string> conflicting_groups;
  std::map<std::string, int64_t> new_versions;  // when ok: node -> its version now
};

struct StoredNode {
  NodeSpec spec;
  std::vector<GroupDemand> placed;
};

// The scheduler's Postgres schema behind a port, so the service is tested without a database.
class SchedulerStore {
 public:
  virtual ~SchedulerStore() = default;
  virtual CommitResult Commit(const WriteSet& writes) = 0;
  // Inserts a node seen for the first time (Ready) or refreshes its facts and heartbeat time;
  // returns its stored condition and version.
  virtual NodeSpec RegisterNode(const NodeSpec& node, TimePoint heartbeat) = 0;
  // Moves a node to `to` when it is in one of `from`; the new version, or nullopt if another
  // replica (or an operator) changed it first.
  virtual std::optional<int64_t> TransitionNode(const std::string& node_id, const std::vector<NodeCondition>& from,
                                                NodeCondition to) = 0;
  virtual std::vector<StoredNode> LoadNodes() = 0;
  virtual std::optional<StoredNode> LoadNode(const std::string& node_id) = 0;
  virtual std::optional<GroupRecord> LoadGroup(const std::string& group_id) = 0;
  virtual std::vector<GroupRecord> LoadGroups(const std::string& state, const std::string& node_id) = 0;
  // Marks the group Deleted (a tombstone, so a late GroupCreated cannot bring it back) and bumps
  // its node's version (stored in *node_version); returns the row as it was.
  virtual std::optional<GroupRecord> DeleteGroup(const events::v1::GroupRef& ref, int64_t* node_version) = 0;
};

// Tells nodes what to run (skiff.node.<id>.run / .delete in the service).
class NodeCommands {
 public:
  virtual ~NodeCommands() = default;
  virtual void Run(const std::string& node_id, const GroupRecord& group) = 0;
  virtual void Delete(const std::string& node_id, const events::v1::GroupRef& ref, int64_t placement_generation) = 0;
};

}  // namespace skiff::scheduler
