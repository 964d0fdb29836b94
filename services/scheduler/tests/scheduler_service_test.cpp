#include "skiff/scheduler/scheduler_service.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace skiff::scheduler {
namespace {

using namespace std::chrono_literals;
namespace ci = containerinstance::v1;

// The scheduler schema in memory, with the same optimistic-concurrency rules as Postgres, so
// two services sharing it behave like two replicas.
class MemoryStore : public SchedulerStore {
 public:
  CommitResult Commit(const WriteSet& writes) override {
    CommitResult result;
    for (const auto& [node_id, expected] : writes.node_versions) {
      if (!nodes.count(node_id) || nodes[node_id].version != expected) result.conflicting_nodes.push_back(node_id);
    }
    for (const auto& write : writes.groups) {
      auto it = groups.find(write.record.ref.group_id());
      const bool ok = write.expected_generation < 0
                          ? it == groups.end()
                          : it != groups.end() && it->second.state != "Deleted" &&
                                it->second.placement_generation == write.expected_generation;
      if (!ok) result.conflicting_groups.push_back(write.record.ref.group_id());
    }
    if (!result.conflicting_nodes.empty() || !result.conflicting_groups.empty()) return result;
    for (const auto& [node_id, expected] : writes.node_versions) result.new_versions[node_id] = ++nodes[node_id].version;
    for (const auto& write : writes.groups) groups[write.record.ref.group_id()] = write.record;
    outbox.insert(outbox.end(), writes.events.begin(), writes.events.end());
    result.ok = true;
    return result;
  }
  NodeSpec RegisterNode(const NodeSpec& node, TimePoint) override {
    auto it = nodes.find(node.node_id);
    if (it == nodes.end()) {
      nodes[node.node_id] = node;
      nodes[node.node_id].condition = NodeCondition::kReady;
      nodes[node.node_id].version = 0;
    } else {
      it->second.zone = node.zone;
      it->second.capacity = node.capacity;
    }
    return nodes[node.node_id];
  }
  std::optional<int64_t> TransitionNode(const std::string& node_id, const std::vector<NodeCondition>& from,
                                        NodeCondition to) override {
    auto it = nodes.find(node_id);
    if (it == nodes.end() || std::find(from.begin(), from.end(), it->second.condition) == from.end()) {
      return std::nullopt;
    }
    it->second.condition = to;
    return ++it->second.version;
  }
  std::vector<StoredNode> LoadNodes() override {
    std::vector<StoredNode> all;
    for (const auto& [id, node] : nodes) all.push_back(*LoadNode(id));
    return all;
  }
  std::optional<StoredNode> LoadNode(const std::string& node_id) override {
    if (!nodes.count(node_id)) return std::nullopt;
    StoredNode stored{nodes[node_id], {}};
    for (const auto& [id, group] : groups) {
      if (group.state == "Placed" && group.node_id == node_id) {
        ci::ContainerGroup spec;
        spec.ParseFromString(group.spec);
        stored.placed.push_back(DemandOf(id, spec));
      }
    }
    return stored;
  }
  std::optional<GroupRecord> LoadGroup(const std::string& group_id) override {
    auto it = groups.find(group_id);
    if (it == groups.end()) return std::nullopt;
    return it->second;
  }
  std::vector<GroupRecord> LoadGroups(const std::string& state, const std::string& node_id) override {
    std::vector<GroupRecord> found;
    for (const auto& [id, group] : groups) {
      if (group.state == state && (node_id.empty() || group.node_id == node_id)) found.push_back(group);
    }
    return found;
  }
  std::optional<GroupRecord> DeleteGroup(const events::v1::GroupRef& ref, int64_t* node_version) override {
    *node_version = -1;
    auto it = groups.find(ref.group_id());
    if (it == groups.end()) {
      GroupRecord tombstone;
      tombstone.ref = ref;
      tombstone.state = "Deleted";
      groups[ref.group_id()] = tombstone;
      return std::nullopt;
    }
    GroupRecord before = it->second;
    if (before.state == "Placed") *node_version = ++nodes[before.node_id].version;
    it->second.state = "Deleted";
    it->second.node_id.clear();
    ++it->second.placement_generation;
    return before;
  }

  // What the nodes would hold: requested cpu per node from the Placed rows.
  double CpuPlacedOn(const std::string& node_id) {
    double cpu = 0;
    const auto node = LoadNode(node_id);  // kept: a range-for over a temporary's member would dangle
    for (const auto& demand : node->placed) cpu += demand.requests.cpu;
    return cpu;
  }
  std::vector<std::string> EventKinds(const std::string& group_id) {
    std::vector<std::string> kinds;
    for (const auto& event : outbox) {
      v1::PlacementEvent parsed;
      parsed.ParseFromString(event.payload);
      if (parsed.group().group_id() == group_id) kinds.push_back(parsed.kind());
    }
    return kinds;
  }
  v1::PlacementEvent LastEvent(const std::string& group_id) {
    v1::PlacementEvent last;
    for (const auto& event : outbox) {
      v1::PlacementEvent parsed;
      parsed.ParseFromString(event.payload);
      if (parsed.group().group_id() == group_id) last = parsed;
    }
    return last;
  }

  std::map<std::string, NodeSpec> nodes;
  std::map<std::string, GroupRecord> groups;
  std::vector<OutboxEvent> outbox;
};

class RecordingNodes : public NodeCommands {
 public:
  struct Command {
    std::string verb, node_id, group_id;
    int64_t generation;
  };
  void Run(const std::string& node_id, const GroupRecord& group) override {
    commands.push_back({"run", node_id, group.ref.group_id(), group.placement_generation});
  }
  void Delete(const std::string& node_id, const events::v1::GroupRef& ref, int64_t generation) override {
    commands.push_back({"delete", node_id, ref.group_id(), generation});
  }
  std::vector<Command> For(const std::string& group_id) const {
    std::vector<Command> found;
    for (const auto& command : commands) {
      if (command.group_id == group_id) found.push_back(command);
    }
    return found;
  }
  std::vector<Command> commands;
};

struct Replica {
  Replica(MemoryStore& store, TimePoint* now, SchedulerOptions options = {})
      : placement({Strategy::kBinPack, 1.0}),
        service(placement, store, nodes, [now] { return *now; }, [this] { return "event-" + std::to_string(++ids); },
                options) {
    service.Start();
  }
  PlacementCore placement;
  RecordingNodes nodes;
  int ids = 0;
  SchedulerService service;
};

node::v1::NodeHeartbeat Heartbeat(const std::string& id, double cpu, double memory_gb,
                                  std::vector<std::pair<std::string, int64_t>> placed = {}) {
  node::v1::NodeHeartbeat heartbeat;
  heartbeat.set_node_id(id);
  heartbeat.set_cpu_capacity(cpu);
  heartbeat.set_memory_gb_capacity(memory_gb);
  for (const auto& [group_id, generation] : placed) {
    auto* copy = heartbeat.add_placed();
    copy->set_group_id(group_id);
    copy->set_placement_generation(generation);
  }
  return heartbeat;
}

events::v1::GroupEvent Created(const std::string& id, double cpu, const std::string& restart_policy = "Always",
                               const std::string& priority = "") {
  events::v1::GroupEvent event;
  event.set_event_id("created-" + id);
  event.mutable_group()->set_group_id(id);
  event.mutable_group()->set_subscription_id("sub");
  event.mutable_group()->set_name("name-" + id);
  event.mutable_group()->set_generation(1);
  auto* spec = event.mutable_created()->mutable_spec();
  spec->mutable_properties()->set_restart_policy(restart_policy);
  spec->mutable_properties()->set_priority(priority);
  auto* requests = spec->mutable_properties()->add_containers()->mutable_properties()->mutable_resources()->mutable_requests();
  requests->set_cpu(cpu);
  requests->set_memory_in_gb(1);
  return event;
}

events::v1::GroupEvent Deleted(const std::string& id) {
  events::v1::GroupEvent event;
  event.mutable_group()->set_group_id(id);
  event.mutable_group()->set_generation(2);
  event.mutable_deleted();
  return event;
}

class SchedulerServiceTest : public ::testing::Test {
 protected:
  TimePoint now = TimePoint(std::chrono::hours(1000));
  MemoryStore store;
};

TEST_F(SchedulerServiceTest, PlacesACreatedGroupAndTellsTheNode) {
  Replica replica(store, &now);
  replica.service.HandleHeartbeat(Heartbeat("n1", 4, 16));
  replica.service.HandleGroupEvents({Created("g1", 1)});
  ASSERT_EQ(replica.nodes.commands.size(), 1u);
  EXPECT_EQ(replica.nodes.commands[0].verb, "run");
  EXPECT_EQ(replica.nodes.commands[0].node_id, "n1");
  EXPECT_EQ(replica.nodes.commands[0].generation, 1);
  EXPECT_EQ(store.groups["g1"].state, "Placed");
  EXPECT_EQ(store.EventKinds("g1"), std::vector<std::string>{"Placed"});
  EXPECT_EQ(store.outbox[0].subject, "skiff.events.placement.placed");
  // A redelivered GroupCreated changes nothing.
  replica.service.HandleGroupEvents({Created("g1", 1)});
  EXPECT_EQ(replica.nodes.commands.size(), 1u);
}

TEST_F(SchedulerServiceTest, AGroupThatFitsNowhereWaitsAndIsPlacedWhenCapacityAppears) {
  Replica replica(store, &now);
  replica.service.HandleHeartbeat(Heartbeat("small", 1, 4));
  replica.service.HandleGroupEvents({Created("g1", 1), Created("g2", 1)});
  EXPECT_EQ(store.groups["g2"].state, "Waiting");
  EXPECT_EQ(store.EventKinds("g2"), std::vector<std::string>{"Waiting"});
  EXPECT_NE(store.LastEvent("g2").message().find("not available"), std::string::npos);
  now += 1s;
  replica.service.Tick();  // still no room: no second Waiting event
  EXPECT_EQ(store.EventKinds("g2").size(), 1u);
  replica.service.HandleHeartbeat(Heartbeat("bigger", 2, 8));
  replica.service.Tick();
  EXPECT_EQ(store.groups["g2"].state, "Placed");
  EXPECT_EQ(store.groups["g2"].node_id, "bigger");
  EXPECT_EQ(store.EventKinds("g2"), (std::vector<std::string>{"Waiting", "Placed"}));
}

TEST_F(SchedulerServiceTest, AGroupLargerThanEveryNodeFailsAtOnce) {
  Replica replica(store, &now);
  replica.service.HandleHeartbeat(Heartbeat("n1", 2, 8));
  replica.service.HandleGroupEvents({Created("huge", 3)});
  EXPECT_EQ(store.groups["huge"].state, "Failed");
  EXPECT_EQ(store.LastEvent("huge").kind(), "Failed");
  EXPECT_EQ(store.LastEvent("huge").reason(), "InsufficientCapacity");
  EXPECT_TRUE(replica.nodes.commands.empty());
  EXPECT_EQ(replica.service.WaitingCount(), 0u);
}

TEST_F(SchedulerServiceTest, AWaitingGroupFailsAfterThePendingTimeout) {
  SchedulerOptions options;
  options.pending_timeout = 60s;
  Replica replica(store, &now, options);
  replica.service.HandleHeartbeat(Heartbeat("n1", 1, 8));
  replica.service.HandleGroupEvents({Created("g1", 1), Created("g2", 1)});
  now += 30s;
  replica.service.HandleHeartbeat(Heartbeat("n1", 1, 8));
  replica.service.Tick();
  EXPECT_EQ(store.groups["g2"].state, "Waiting");
  now += 31s;
  replica.service.HandleHeartbeat(Heartbeat("n1", 1, 8));
  replica.service.Tick();
  EXPECT_EQ(store.groups["g2"].state, "Failed");
  EXPECT_EQ(store.LastEvent("g2").reason(), "ServiceUnavailable");
}

TEST_F(SchedulerServiceTest, TwoReplicasNeverOvercommitANode) {
  Replica a(store, &now), b(store, &now);
  a.service.HandleHeartbeat(Heartbeat("n1", 2, 8));
  b.service.HandleHeartbeat(Heartbeat("n1", 2, 8));
  // Each replica takes a different event off the shared consumer; b's view is stale.
  a.service.HandleGroupEvents({Created("g1", 1.5)});
  b.service.HandleGroupEvents({Created("g2", 1.5)});
  EXPECT_EQ(store.groups["g1"].state, "Placed");
  EXPECT_EQ(store.groups["g2"].state, "Waiting");
  EXPECT_LE(store.CpuPlacedOn("n1"), 2.0);
  EXPECT_TRUE(b.nodes.commands.empty());
  // The same group handled by both (redelivery to the other replica): placed once.
  a.service.HandleHeartbeat(Heartbeat("n2", 4, 8));
  b.service.HandleHeartbeat(Heartbeat("n2", 4, 8));
  a.service.HandleGroupEvents({Created("g3", 1)});
  b.service.HandleGroupEvents({Created("g3", 1)});
  EXPECT_EQ(a.nodes.For("g3").size() + b.nodes.For("g3").size(), 1u);
}

TEST_F(SchedulerServiceTest, ALostNodesGroupsMoveOrFailByRestartPolicyAndTheStaleCopyIsFenced) {
  SchedulerOptions options;
  options.node_lost_after = 10s;
  Replica replica(store, &now, options);
  replica.service.HandleHeartbeat(Heartbeat("a", 2, 8));
  replica.service.HandleGroupEvents({Created("always", 1), Created("never", 1, "Never")});
  ASSERT_EQ(store.groups["always"].node_id, "a");
  replica.service.HandleHeartbeat(Heartbeat("b", 4, 8));
  for (int i = 0; i < 12; ++i) {
    now += 1s;
    replica.service.HandleHeartbeat(Heartbeat("b", 4, 8));
    replica.service.Tick();
  }
  EXPECT_EQ(store.nodes["a"].condition, NodeCondition::kLost);
  EXPECT_EQ(store.groups["always"].node_id, "b");
  EXPECT_EQ(store.groups["always"].placement_generation, 3);  // placed, rescheduled, placed again
  EXPECT_EQ(store.EventKinds("always"), (std::vector<std::string>{"Placed", "Rescheduled", "Placed"}));
  EXPECT_EQ(store.groups["never"].state, "Failed");
  EXPECT_EQ(store.LastEvent("never").reason(), "NodeLost");
  // Node a comes back still running its old copies: both are told to go, fenced by generation.
  replica.service.HandleHeartbeat(Heartbeat("a", 2, 8, {{"always", 1}, {"never", 1}}));
  EXPECT_EQ(store.nodes["a"].condition, NodeCondition::kReady);
  auto commands = replica.nodes.For("always");
  ASSERT_FALSE(commands.empty());
  EXPECT_EQ(commands.back().verb, "delete");
  EXPECT_EQ(commands.back().node_id, "a");
  EXPECT_EQ(commands.back().generation, 1);
  EXPECT_EQ(replica.nodes.For("never").back().verb, "delete");
  // The current copy on b is left alone.
  replica.service.HandleHeartbeat(Heartbeat("b", 4, 8, {{"always", 3}}));
  EXPECT_EQ(replica.nodes.For("always").back().node_id, "a");
}

TEST_F(SchedulerServiceTest, ARegularGroupEvictsSpotAndTheSpotGroupWaits) {
  Replica replica(store, &now);
  replica.service.HandleHeartbeat(Heartbeat("n1", 2, 8));
  replica.service.HandleGroupEvents({Created("spot", 1.5, "Always", "Spot")});
  ASSERT_EQ(store.groups["spot"].state, "Placed");
  replica.service.HandleGroupEvents({Created("regular", 1.5)});
  EXPECT_EQ(store.groups["regular"].state, "Placed");
  EXPECT_EQ(store.groups["spot"].state, "Waiting");
  // Evicted says it waits for room; no separate Waiting event follows.
  replica.service.Tick();
  EXPECT_EQ(store.EventKinds("spot"), (std::vector<std::string>{"Placed", "Evicted"}));
  auto spot_commands = replica.nodes.For("spot");
  ASSERT_EQ(spot_commands.size(), 2u);
  EXPECT_EQ(spot_commands[1].verb, "delete");
  EXPECT_EQ(spot_commands[1].generation, 1);
  EXPECT_LE(store.CpuPlacedOn("n1"), 2.0);
  // Room elsewhere: the evicted Spot group restarts there.
  replica.service.HandleHeartbeat(Heartbeat("n2", 2, 8));
  replica.service.Tick();
  EXPECT_EQ(store.groups["spot"].state, "Placed");
  EXPECT_EQ(store.groups["spot"].node_id, "n2");
}

TEST_F(SchedulerServiceTest, SpotWaitsWhileARegularGroupNeedsTheRoom) {
  Replica replica(store, &now);
  replica.service.HandleHeartbeat(Heartbeat("n1", 1, 8));
  replica.service.HandleGroupEvents({Created("r1", 1)});
  replica.service.HandleGroupEvents({Created("r2", 1), Created("s1", 0.5, "Always", "Spot")});
  replica.service.HandleHeartbeat(Heartbeat("n2", 1, 8));
  replica.service.Tick();
  EXPECT_EQ(store.groups["r2"].node_id, "n2");
  EXPECT_EQ(store.groups["s1"].state, "Waiting");
}

TEST_F(SchedulerServiceTest, DeleteReleasesTheCapacityAndTellsTheNode) {
  Replica replica(store, &now);
  replica.service.HandleHeartbeat(Heartbeat("n1", 1, 8));
  replica.service.HandleGroupEvents({Created("g1", 1), Created("g2", 1)});
  ASSERT_EQ(store.groups["g2"].state, "Waiting");
  replica.service.HandleGroupEvents({Deleted("g1")});
  EXPECT_EQ(replica.nodes.For("g1").back().verb, "delete");
  EXPECT_EQ(store.groups["g1"].state, "Deleted");
  EXPECT_EQ(store.groups["g2"].state, "Placed");
}

TEST_F(SchedulerServiceTest, ADeleteSeenBeforeTheCreateKeepsTheGroupGone) {
  Replica a(store, &now), b(store, &now);
  a.service.HandleHeartbeat(Heartbeat("n1", 4, 8));
  b.service.HandleHeartbeat(Heartbeat("n1", 4, 8));
  a.service.HandleGroupEvents({Deleted("g1")});
  b.service.HandleGroupEvents({Created("g1", 1)});
  EXPECT_EQ(store.groups["g1"].state, "Deleted");
  EXPECT_TRUE(b.nodes.For("g1").empty());
  EXPECT_EQ(b.service.WaitingCount(), 0u);
}

TEST_F(SchedulerServiceTest, AChangedSpecIsPlacedAgainWithANewGeneration) {
  Replica replica(store, &now);
  replica.service.HandleHeartbeat(Heartbeat("n1", 4, 8));
  replica.service.HandleGroupEvents({Created("g1", 1)});
  events::v1::GroupEvent updated = Created("g1", 2);
  updated.mutable_group()->set_generation(2);
  const ci::ContainerGroup spec = updated.created().spec();  // before the oneof switches
  *updated.mutable_updated()->mutable_spec() = spec;
  replica.service.HandleGroupEvents({updated});
  auto commands = replica.nodes.For("g1");
  ASSERT_EQ(commands.size(), 3u);
  EXPECT_EQ(commands[1].verb, "delete");
  EXPECT_EQ(commands[1].generation, 1);
  EXPECT_EQ(commands[2].verb, "run");
  EXPECT_EQ(commands[2].generation, 3);
  EXPECT_DOUBLE_EQ(store.CpuPlacedOn("n1"), 2.0);
}

TEST_F(SchedulerServiceTest, DrainMovesGroupsToOtherNodesStartingThemFirst) {
  Replica replica(store, &now);
  replica.service.HandleHeartbeat(Heartbeat("a", 2, 8));
  replica.service.HandleGroupEvents({Created("g1", 1), Created("g2", 1)});
  replica.service.HandleHeartbeat(Heartbeat("b", 1, 8));
  auto reply = replica.service.Drain("a");
  EXPECT_TRUE(reply.ok());
  EXPECT_EQ(reply.moved_groups(), 1);  // b holds one of them; the other keeps running on a
  EXPECT_EQ(store.nodes["a"].condition, NodeCondition::kDraining);
  int moved = 0;
  for (const std::string id : {"g1", "g2"}) {
    auto commands = replica.nodes.For(id);
    if (store.groups[id].node_id != "b") continue;
    ++moved;
    ASSERT_EQ(commands.size(), 3u);
    EXPECT_EQ(commands[1].verb, "run");
    EXPECT_EQ(commands[1].node_id, "b");
    EXPECT_EQ(commands[2].verb, "delete");
    EXPECT_EQ(commands[2].node_id, "a");
  }
  EXPECT_EQ(moved, 1);
  // New groups never land on the draining node; uncordon makes it usable again.
  replica.service.HandleGroupEvents({Created("g3", 0.5)});
  EXPECT_EQ(store.groups["g3"].state, "Waiting");
  EXPECT_TRUE(replica.service.Uncordon("a").ok());
  EXPECT_EQ(store.groups["g3"].node_id, "a");
  EXPECT_EQ(replica.service.Cordon("nope").error_code(), "NodeNotFound");
}

node::v1::ContainerEvent SandboxState(const std::string& group_id, const std::string& node_id, int64_t generation,
                                      const std::string& state) {
  node::v1::ContainerEvent event;
  event.mutable_group()->set_group_id(group_id);
  event.set_node_id(node_id);
  event.set_placement_generation(generation);
  event.set_group_state(state);
  return event;
}

TEST_F(SchedulerServiceTest, AnEndedGroupGivesItsRoomBackAndTakesItAgainWhenRunning) {
  Replica replica(store, &now);
  replica.service.HandleHeartbeat(Heartbeat("n1", 1, 8));
  replica.service.HandleGroupEvents({Created("job", 1, "Never"), Created("next", 1)});
  ASSERT_EQ(store.groups["next"].state, "Waiting");
  // A stale copy's state (older generation, or another node) changes nothing.
  replica.service.HandleSandboxEvent(SandboxState("job", "n1", 0, "Succeeded"));
  replica.service.HandleSandboxEvent(SandboxState("job", "n2", 1, "Succeeded"));
  EXPECT_EQ(store.groups["job"].state, "Placed");
  replica.service.HandleSandboxEvent(SandboxState("job", "n1", 1, "Succeeded"));
  EXPECT_EQ(store.groups["job"].state, "Ended");
  EXPECT_EQ(store.groups["next"].state, "Placed");  // the freed room went to the waiting group
  // The ended copy stays on its node (its logs remain) and is not fenced as stale.
  replica.service.HandleHeartbeat(Heartbeat("n1", 1, 8, {{"job", 1}, {"next", 1}}));
  EXPECT_EQ(replica.nodes.For("job").size(), 1u);
  // Started again in place: it holds room again (here over-committing, as it already runs).
  replica.service.HandleSandboxEvent(SandboxState("job", "n1", 1, "Running"));
  EXPECT_EQ(store.groups["job"].state, "Placed");
  EXPECT_DOUBLE_EQ(store.CpuPlacedOn("n1"), 2.0);
  // Deleting an ended group still removes it from its node.
  replica.service.HandleSandboxEvent(SandboxState("job", "n1", 1, "Stopped"));
  replica.service.HandleGroupEvents({Deleted("job")});
  EXPECT_EQ(replica.nodes.For("job").back().verb, "delete");
}

TEST_F(SchedulerServiceTest, AnUpdateHandledByAReplicaWithAStaleViewIsNotLost) {
  Replica a(store, &now), b(store, &now);
  b.service.HandleHeartbeat(Heartbeat("n1", 4, 8));
  a.service.HandleHeartbeat(Heartbeat("n1", 4, 8));
  a.service.HandleGroupEvents({Created("g1", 1), Created("g2", 1)});  // b's node version is now stale
  events::v1::GroupEvent updated = Created("g1", 2);
  updated.mutable_group()->set_generation(2);
  const ci::ContainerGroup spec = updated.created().spec();
  *updated.mutable_updated()->mutable_spec() = spec;
  b.service.HandleGroupEvents({updated});
  EXPECT_EQ(store.groups["g1"].state, "Placed");
  EXPECT_EQ(store.groups["g1"].placement_generation, 3);
  ASSERT_FALSE(b.nodes.For("g1").empty());
  EXPECT_EQ(b.nodes.For("g1").back().verb, "run");
  EXPECT_DOUBLE_EQ(store.CpuPlacedOn("n1"), 3.0);
}

}  // namespace
}  // namespace skiff::scheduler
