#include "skiff/scheduler/scheduler_service.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <set>
#include <stdexcept>

namespace skiff::scheduler {

namespace {

bool EqualsIgnoreCase(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

containerinstance::v1::ContainerGroup ParseSpec(const GroupRecord& record) {
  containerinstance::v1::ContainerGroup spec;
  spec.ParseFromString(record.spec);
  return spec;
}

GroupDemand DemandOfRecord(const GroupRecord& record) {
  return DemandOf(record.ref.group_id(), ParseSpec(record));
}

bool RestartsOnNodeLoss(const GroupRecord& record) {
  // Always and OnFailure groups are restarted elsewhere; a Never group ran its one chance.
  return !EqualsIgnoreCase(ParseSpec(record).properties().restart_policy(), "Never");
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

}  // namespace

GroupDemand DemandOf(const std::string& group_id, const containerinstance::v1::ContainerGroup& spec) {
  GroupDemand demand;
  demand.group_id = group_id;
  const auto& properties = spec.properties();
  for (const auto& container : properties.containers()) {
    const auto& requests = container.properties().resources().requests();
    const auto& limits = container.properties().resources().limits();
    Resources requested{requests.cpu(), requests.memory_in_gb(), requests.gpu().count()};
    Resources limited = requested;
    if (limits.has_cpu()) limited.cpu = std::max(limits.cpu(), requested.cpu);
    if (limits.has_memory_in_gb()) limited.memory_gb = std::max(limits.memory_in_gb(), requested.memory_gb);
    demand.requests += requested;
    demand.limits += limited;
  }
  demand.os_type = properties.os_type().empty() || EqualsIgnoreCase(properties.os_type(), "Linux") ? "Linux"
                                                                                                   : properties.os_type();
  demand.microvm = EqualsIgnoreCase(properties.isolation(), "MicroVM");
  demand.zones.assign(spec.zones().begin(), spec.zones().end());
  if (EqualsIgnoreCase(properties.ip_address().type(), "Public")) {
    for (const auto& port : properties.ip_address().ports()) {
      demand.public_ports.push_back(PortKey(port.protocol(), port.port()));
    }
  }
  demand.spot = EqualsIgnoreCase(properties.priority(), "Spot");
  return demand;
}

SchedulerService::SchedulerService(PlacementPolicy& placement, SchedulerStore& store, NodeCommands& nodes, Clock clock,
                                   NewId new_id, SchedulerOptions options)
    : placement_(placement),
      store_(store),
      nodes_(nodes),
      clock_(std::move(clock)),
      new_id_(std::move(new_id)),
      options_(options) {}

void SchedulerService::Start() {
  started_ = clock_();
  Refresh();
}

size_t SchedulerService::WaitingCount() const { return waiting_.size(); }

OutboxEvent SchedulerService::Event(const GroupRecord& group, const std::string& kind, const std::string& node_id,
                                    const std::string& reason, const std::string& message) {
  v1::PlacementEvent event;
  event.set_event_id(new_id_());
  *event.mutable_occurred_at() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_().time_since_epoch()).count());
  event.set_causation_id(group.causation_id);
  *event.mutable_group() = group.ref;
  event.set_kind(kind);
  event.set_node_id(node_id);
  event.set_placement_generation(group.placement_generation);
  event.set_reason(reason);
  event.set_message(message);
  return {event.event_id(), "skiff.events.placement." + Lower(kind), event.SerializeAsString()};
}

void SchedulerService::ReloadNode(const std::string& node_id) {
  if (auto stored = store_.LoadNode(node_id)) {
    placement_.ResetNode(stored->spec, stored->placed);
  } else {
    placement_.RemoveNode(node_id);
  }
}

void SchedulerService::Refresh() {
  last_refresh_ = clock_();
  for (const auto& node : store_.LoadNodes()) {
    placement_.ResetNode(node.spec, node.placed);
    last_seen_.emplace(node.spec.node_id, started_);  // a grace period for nodes seen before we started
  }
  // Groups another replica took in (or left behind when it stopped) and that still wait.
  for (auto& record : store_.LoadGroups("Waiting", "")) {
    const std::string id = record.ref.group_id();
    if (!waiting_.count(id)) waiting_[id] = Candidate{record, record.placement_generation, ""};
  }
}

std::vector<std::string> SchedulerService::PlacePass(std::vector<Candidate> candidates) {
  std::vector<std::string> placed_ids;
  bool refreshed = false;
  for (int attempt = 0; attempt < options_.commit_attempts && !candidates.empty(); ++attempt) {
    const TimePoint now = clock_();
    // Regular groups first, oldest first: Spot only gets capacity Regular groups do not need.
    std::map<std::string, bool> spot;  // parsed once, not in every comparison
    for (const auto& candidate : candidates) spot[candidate.record.ref.group_id()] = DemandOfRecord(candidate.record).spot;
    std::stable_sort(candidates.begin(), candidates.end(), [&spot](const Candidate& a, const Candidate& b) {
      const bool a_spot = spot[a.record.ref.group_id()], b_spot = spot[b.record.ref.group_id()];
      if (a_spot != b_spot) return !a_spot;
      return a.record.waiting_since < b.record.waiting_since;
    });
    WriteSet writes;
    std::vector<std::function<void()>> after;      // tell nodes, once committed
    std::vector<std::function<void()>> remember;   // update what this replica knows, once committed
    std::set<std::string> touched;
    auto touch = [&](const std::string& node_id) {
      if (!writes.node_versions.count(node_id)) writes.node_versions[node_id] = placement_.VersionOf(node_id);
      touched.insert(node_id);
    };
    std::vector<std::string> placing;
    bool regular_waits = false, restart = false;
    for (const Candidate& candidate : candidates) {
      const GroupDemand demand = DemandOfRecord(candidate.record);
      const std::string id = candidate.record.ref.group_id();
      PlacementDecision decision;
      if (demand.spot && regular_waits) {
        decision.reason = "Spot capacity is held back while Regular groups wait for room.";
      } else {
        decision = placement_.Place(demand);
      }
      if (decision.placed) {
        touch(decision.node_id);
        for (const auto& victim_id : decision.evict) {
          std::optional<GroupRecord> victim;
          if (auto it = placed_.find(victim_id); it != placed_.end()) victim = it->second;
          if (!victim) victim = store_.LoadGroup(victim_id);
          if (!victim) continue;  // the commit's version check catches a stale view
          GroupRecord evicted = *victim;
          evicted.state = "Waiting";
          evicted.node_id.clear();
          evicted.placement_generation = victim->placement_generation + 1;
          evicted.waiting_since = now;
          evicted.reason = "SpotEvicted";
          evicted.waiting_announced = true;  // the Evicted event says it waits for room
          writes.groups.push_back({evicted, victim->placement_generation});
          writes.events.push_back(Event(evicted, "Evicted", decision.node_id, "SpotEvicted",
                                        "The Spot container group was evicted to make room for a Regular one; it is "
                                        "restarted when capacity allows."));
          placement_.Release(victim_id, placement_.VersionOf(decision.node_id));
          const std::string node_id = decision.node_id;
          after.push_back([this, node_id, victim = *victim] {
            nodes_.Delete(node_id, victim.ref, victim.placement_generation);
          });
          remember.push_back([this, evicted] {
            placed_.erase(evicted.ref.group_id());
            waiting_[evicted.ref.group_id()] = Candidate{evicted, evicted.placement_generation, ""};
          });
        }
        GroupRecord record = candidate.record;
        record.state = "Placed";
        record.node_id = decision.node_id;
        record.placement_generation = std::max<int64_t>(candidate.expected_generation, 0) + 1;
        record.reason.clear();
        writes.groups.push_back({record, candidate.expected_generation});
        writes.events.push_back(Event(record, "Placed", decision.node_id,
                                      candidate.moving_from.empty() ? "" : "NodeDraining", ""));
        placement_.Assign(decision.node_id, demand, placement_.VersionOf(decision.node_id));
        const std::string from = candidate.moving_from;
        const int64_t old_generation = candidate.expected_generation;
        after.push_back([this, record, from, old_generation] {
          nodes_.Run(record.node_id, record);
          if (!from.empty()) nodes_.Delete(from, record.ref, old_generation);
        });
        remember.push_back([this, record] {
          waiting_.erase(record.ref.group_id());
          placed_[record.ref.group_id()] = record;
        });
        placing.push_back(id);
        continue;
      }
      if (!candidate.moving_from.empty()) continue;  // drain: it keeps running where it is
      if (!refreshed && (now - last_refresh_ > std::chrono::seconds(1) || placement_.Nodes().empty())) {
        // Before a group is told to wait, look at what the other replicas did since the last
        // refresh (a node registered before this replica heard from it, capacity freed); then
        // decide the whole pass again.
        refreshed = true;
        restart = true;
        break;
      }
      if (!demand.spot) regular_waits = true;
      GroupRecord record = candidate.record;
      const bool timed_out = now - record.waiting_since > options_.pending_timeout;
      if (decision.never_fits || timed_out) {
        record.state = "Failed";
        record.reason = decision.never_fits ? "InsufficientCapacity" : "ServiceUnavailable";
        const std::string message =
            decision.never_fits ? decision.reason
                                : "The requested resource is not available in the location at this moment. Please "
                                  "retry with a different resource request or later. " +
                                      decision.reason;
        writes.groups.push_back({record, candidate.expected_generation});
        writes.events.push_back(Event(record, "Failed", "", record.reason, message));
        remember.push_back([this, id] { waiting_.erase(id); });
      } else if (!record.waiting_announced || candidate.expected_generation < 0) {
        const bool announce = !record.waiting_announced;
        record.waiting_announced = true;
        record.reason = decision.reason;
        writes.groups.push_back({record, candidate.expected_generation});
        if (announce) writes.events.push_back(Event(record, "Waiting", "", "InsufficientCapacity", decision.reason));
        remember.push_back([this, record] {
          waiting_[record.ref.group_id()] = Candidate{record, record.placement_generation, ""};
        });
      }
    }
    if (restart) {
      Refresh();  // also undoes this pass's tentative assignments
      --attempt;
      continue;
    }
    if (writes.groups.empty() && writes.events.empty()) return placed_ids;
    CommitResult result = store_.Commit(writes);
    if (result.ok) {
      for (const auto& [node_id, version] : result.new_versions) placement_.SetVersion(node_id, version);
      for (auto& step : remember) step();
      for (auto& step : after) step();
      placed_ids.insert(placed_ids.end(), placing.begin(), placing.end());
      return placed_ids;
    }
    // Another replica changed a node or a group first: re-read them, undo our tentative
    // assignments, and decide again.
    for (const auto& node_id : touched) ReloadNode(node_id);
    for (const auto& node_id : result.conflicting_nodes) ReloadNode(node_id);
    for (const auto& group_id : result.conflicting_groups) {
      auto it = std::find_if(candidates.begin(), candidates.end(),
                             [&](const Candidate& c) { return c.record.ref.group_id() == group_id; });
      if (it == candidates.end()) continue;  // an eviction victim: its node was reloaded
      auto row = store_.LoadGroup(group_id);
      if (row && row->state == "Waiting" && it->moving_from.empty()) {
        it->record = *row;
        it->expected_generation = row->placement_generation;
        continue;
      }
      if (row && row->state == "Placed" && !it->moving_from.empty() && row->node_id == it->moving_from) {
        it->expected_generation = row->placement_generation;
        it->record = *row;
        continue;
      }
      if (row && row->state == "Placed") placed_[group_id] = *row;
      waiting_.erase(group_id);
      candidates.erase(it);
    }
  }
  return placed_ids;
}

void SchedulerService::PlaceWaiting() {
  if (waiting_.empty()) return;
  std::vector<Candidate> candidates;
  candidates.reserve(waiting_.size());
  for (const auto& [id, candidate] : waiting_) candidates.push_back(candidate);
  PlacePass(std::move(candidates));
}

void SchedulerService::HandleGroupEvents(const std::vector<events::v1::GroupEvent>& events) {
  const TimePoint now = clock_();
  for (const auto& event : events) {
    const std::string id = event.group().group_id();
    if (event.has_deleted()) {
      int64_t node_version = -1;
      auto row = store_.DeleteGroup(event.group(), &node_version);
      waiting_.erase(id);
      placed_.erase(id);
      if (row && (row->state == "Placed" || row->state == "Ended")) {
        if (row->state == "Placed") placement_.Release(id, node_version);
        nodes_.Delete(row->node_id, row->ref, row->placement_generation);
      }
      continue;
    }
    const bool created = event.has_created();
    if (!created && !(event.has_updated() && !event.updated().tags_only())) continue;
    const auto& spec = created ? event.created().spec() : event.updated().spec();
    auto known_generation = [&](const GroupRecord& r) { return r.ref.generation() >= event.group().generation(); };
    if (auto it = placed_.find(id); it != placed_.end() && known_generation(it->second)) continue;
    if (auto it = waiting_.find(id); it != waiting_.end()) {
      if (known_generation(it->second.record)) continue;
      it->second.record.ref = event.group();  // still waiting: the new spec is what gets placed
      it->second.record.spec = spec.SerializeAsString();
      continue;
    }
    bool handled = false;
    for (int attempt = 0; attempt < options_.commit_attempts && !handled; ++attempt) {
      std::optional<GroupRecord> row = created ? std::nullopt : store_.LoadGroup(id);
      if (row && row->state == "Deleted") {
        handled = true;  // deleted meanwhile: nothing to place
        break;
      }
      GroupRecord record;
      record.ref = event.group();
      record.spec = spec.SerializeAsString();
      record.causation_id = event.causation_id();
      record.waiting_since = now;
      if (row && (row->state == "Placed" || row->state == "Ended")) {
        // A changed spec restarts the group, as ACI does: off its node, then placed again.
        record.placement_generation = row->placement_generation + 1;
        WriteSet writes;
        writes.groups.push_back({record, row->placement_generation});
        writes.node_versions[row->node_id] = placement_.VersionOf(row->node_id);
        writes.events.push_back(Event(record, "Rescheduled", row->node_id, "Updated",
                                      "The group's spec changed; it is placed again."));
        auto result = store_.Commit(writes);
        if (!result.ok) {
          ReloadNode(row->node_id);  // another replica moved first: read the row again
          continue;
        }
        for (const auto& [node_id, version] : result.new_versions) placement_.SetVersion(node_id, version);
        placement_.Release(id, placement_.VersionOf(row->node_id));
        placed_.erase(id);
        nodes_.Delete(row->node_id, row->ref, row->placement_generation);
        waiting_[id] = Candidate{record, record.placement_generation, ""};
      } else if (row) {
        record.placement_generation = row->placement_generation;
        waiting_[id] = Candidate{record, row->placement_generation, ""};
      } else {
        waiting_[id] = Candidate{record, -1, ""};
      }
      handled = true;
    }
    if (!handled) {
      // Not acknowledged: JetStream delivers the event again and it is tried afresh.
      throw std::runtime_error("group " + id + " kept changing under this replica");
    }
  }
  PlaceWaiting();
}

void SchedulerService::HandleHeartbeat(const node::v1::NodeHeartbeat& heartbeat) {
  const TimePoint now = clock_();
  const std::string& node_id = heartbeat.node_id();
  if (node_id.empty()) return;
  last_seen_[node_id] = now;
  NodeSpec spec;
  spec.node_id = node_id;
  spec.zone = heartbeat.zone();
  spec.os_type = heartbeat.os_type().empty() ? "Linux" : heartbeat.os_type();
  spec.capacity = {heartbeat.cpu_capacity(), heartbeat.memory_gb_capacity(), heartbeat.gpu_capacity()};
  spec.microvm = heartbeat.microvm();
  auto view = placement_.Node(node_id);
  const bool changed = !view || view->spec.zone != spec.zone || view->spec.os_type != spec.os_type ||
                       view->spec.microvm != spec.microvm ||
                       view->spec.capacity.cpu != spec.capacity.cpu ||
                       view->spec.capacity.memory_gb != spec.capacity.memory_gb ||
                       view->spec.capacity.gpu != spec.capacity.gpu;
  if (changed || now - registered_at_[node_id] > std::chrono::seconds(30)) {
    store_.RegisterNode(spec, now);
    registered_at_[node_id] = now;
    if (!view) {
      ReloadNode(node_id);
    } else {
      placement_.UpsertNode(spec);
    }
    view = placement_.Node(node_id);
  }
  if (view && view->spec.condition == NodeCondition::kLost) {
    // The node came back: usable again; its stale copies are fenced below.
    store_.TransitionNode(node_id, {NodeCondition::kLost}, NodeCondition::kReady);
    ReloadNode(node_id);
  }
  for (const auto& copy : heartbeat.placed()) {
    const std::string& group_id = copy.group_id();
    if (auto it = placed_.find(group_id); it != placed_.end() && it->second.node_id == node_id &&
                                          it->second.placement_generation == copy.placement_generation()) {
      continue;
    }
    const std::string key = node_id + "/" + group_id;
    if (auto it = fenced_.find(key); it != fenced_.end() && now - it->second < std::chrono::seconds(10)) continue;
    auto row = store_.LoadGroup(group_id);
    if (row && (row->state == "Placed" || row->state == "Ended") && row->node_id == node_id &&
        row->placement_generation <= copy.placement_generation()) {
      if (row->state == "Placed") placed_[group_id] = *row;
      continue;
    }
    // Placed elsewhere since, failed, deleted, or never ours: this copy must not run twice.
    fenced_[key] = now;
    events::v1::GroupRef ref;
    if (row) {
      ref = row->ref;
    } else {
      ref.set_group_id(group_id);
    }
    nodes_.Delete(node_id, ref, copy.placement_generation());
  }
  for (auto it = fenced_.begin(); it != fenced_.end();) {
    it = now - it->second > std::chrono::minutes(1) ? fenced_.erase(it) : std::next(it);
  }
}

void SchedulerService::HandleSandboxEvent(const node::v1::ContainerEvent& event) {
  if (!event.container().empty()) return;
  const std::string& state = event.group_state();
  const bool ended = state == "Succeeded" || state == "Failed" || state == "Stopped";
  const bool running = state == "Running";
  if (!ended && !running) return;
  const std::string id = event.group().group_id();
  for (int attempt = 0; attempt < options_.commit_attempts; ++attempt) {
    auto row = store_.LoadGroup(id);
    // Only the current copy counts: a stale copy (older generation, other node) is ignored.
    if (!row || row->node_id != event.node_id() || row->placement_generation != event.placement_generation()) return;
    if (ended ? row->state != "Placed" : row->state != "Ended") return;
    GroupRecord record = *row;
    record.state = ended ? "Ended" : "Placed";
    record.reason = ended ? state : "";
    WriteSet writes;
    writes.groups.push_back({record, row->placement_generation});
    writes.node_versions[row->node_id] = placement_.VersionOf(row->node_id);
    auto result = store_.Commit(writes);
    if (!result.ok) {
      ReloadNode(row->node_id);
      continue;
    }
    if (ended) {
      placement_.Release(id, result.new_versions[row->node_id]);
      placed_.erase(id);
    } else {
      // Started again where it is (ACI's start): it holds its node's room again, even if that
      // over-commits the node for a while: the containers already run there.
      placement_.Assign(row->node_id, DemandOfRecord(record), result.new_versions[row->node_id]);
      placed_[id] = record;
    }
    if (ended) PlaceWaiting();
    return;
  }
}

void SchedulerService::HandleNodeLost(const std::string& node_id) {
  for (int attempt = 0; attempt < options_.commit_attempts; ++attempt) {
    ReloadNode(node_id);
    const TimePoint now = clock_();
    auto groups = store_.LoadGroups("Placed", node_id);
    if (groups.empty()) return;
    WriteSet writes;
    writes.node_versions[node_id] = placement_.VersionOf(node_id);
    std::vector<GroupRecord> replaced;
    for (const auto& group : groups) {
      GroupRecord record = group;
      record.node_id.clear();
      record.placement_generation = group.placement_generation + 1;
      record.waiting_since = now;
      record.waiting_announced = false;
      if (RestartsOnNodeLoss(group)) {
        record.state = "Waiting";
        record.reason = "NodeLost";
        writes.events.push_back(Event(record, "Rescheduled", node_id, "NodeLost",
                                      "The node running the group stopped answering; the group is restarted on "
                                      "another node."));
      } else {
        record.state = "Failed";
        record.reason = "NodeLost";
        writes.events.push_back(Event(record, "Failed", node_id, "NodeLost",
                                      "The node running the group stopped answering and the group's restart policy "
                                      "is Never."));
      }
      writes.groups.push_back({record, group.placement_generation});
      replaced.push_back(record);
    }
    auto result = store_.Commit(writes);
    if (!result.ok) continue;
    for (const auto& [id, version] : result.new_versions) placement_.SetVersion(id, version);
    for (const auto& record : replaced) {
      const std::string id = record.ref.group_id();
      placement_.Release(id, placement_.VersionOf(node_id));
      placed_.erase(id);
      if (record.state == "Waiting") waiting_[id] = Candidate{record, record.placement_generation, ""};
    }
    return;
  }
}

void SchedulerService::Tick() {
  const TimePoint now = clock_();
  if (now - last_refresh_ > options_.refresh_interval) Refresh();
  for (const auto& view : placement_.Nodes()) {
    if (view.spec.condition == NodeCondition::kLost) continue;
    auto seen = last_seen_.find(view.spec.node_id);
    const TimePoint last = seen == last_seen_.end() ? started_ : seen->second;
    if (now - last <= options_.node_lost_after) continue;
    const std::string node_id = view.spec.node_id;
    auto won = store_.TransitionNode(
        node_id, {NodeCondition::kReady, NodeCondition::kCordoned, NodeCondition::kDraining}, NodeCondition::kLost);
    if (won) {
      HandleNodeLost(node_id);  // this replica marked it lost, so it moves the groups
    } else {
      ReloadNode(node_id);
    }
  }
  PlaceWaiting();
}

v1::NodesReply SchedulerService::Nodes() const {
  v1::NodesReply reply;
  for (const auto& view : placement_.Nodes()) {
    auto* node = reply.add_nodes();
    node->set_node_id(view.spec.node_id);
    node->set_zone(view.spec.zone);
    node->set_state(ConditionName(view.spec.condition));
    node->set_cpu_capacity(view.spec.capacity.cpu);
    node->set_memory_gb_capacity(view.spec.capacity.memory_gb);
    node->set_cpu_requested(view.requested.cpu);
    node->set_memory_gb_requested(view.requested.memory_gb);
    node->set_groups(static_cast<int32_t>(view.groups));
    if (auto it = last_seen_.find(view.spec.node_id); it != last_seen_.end()) {
      *node->mutable_last_heartbeat() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
          std::chrono::duration_cast<std::chrono::nanoseconds>(it->second.time_since_epoch()).count());
    }
  }
  return reply;
}

namespace {
v1::NodeAdminReply AdminError(const std::string& code, const std::string& message) {
  v1::NodeAdminReply reply;
  reply.set_error_code(code);
  reply.set_error_message(message);
  return reply;
}
}  // namespace

v1::NodeAdminReply SchedulerService::Cordon(const std::string& node_id) {
  if (!placement_.Node(node_id)) return AdminError("NodeNotFound", "No node '" + node_id + "' is registered.");
  if (!store_.TransitionNode(node_id, {NodeCondition::kReady}, NodeCondition::kCordoned)) {
    ReloadNode(node_id);
    return AdminError("NodeNotReady", "The node is not Ready (it is cordoned, draining or lost).");
  }
  ReloadNode(node_id);
  v1::NodeAdminReply reply;
  reply.set_ok(true);
  return reply;
}

v1::NodeAdminReply SchedulerService::Uncordon(const std::string& node_id) {
  if (!placement_.Node(node_id)) return AdminError("NodeNotFound", "No node '" + node_id + "' is registered.");
  if (!store_.TransitionNode(node_id, {NodeCondition::kCordoned, NodeCondition::kDraining}, NodeCondition::kReady)) {
    ReloadNode(node_id);
    return AdminError("NodeNotCordoned", "The node is not cordoned or draining.");
  }
  ReloadNode(node_id);
  PlaceWaiting();
  v1::NodeAdminReply reply;
  reply.set_ok(true);
  return reply;
}

v1::NodeAdminReply SchedulerService::Drain(const std::string& node_id) {
  if (!placement_.Node(node_id)) return AdminError("NodeNotFound", "No node '" + node_id + "' is registered.");
  if (!store_.TransitionNode(node_id, {NodeCondition::kReady, NodeCondition::kCordoned, NodeCondition::kDraining},
                             NodeCondition::kDraining)) {
    ReloadNode(node_id);
    return AdminError("NodeLost", "The node is lost; its groups are being placed elsewhere already.");
  }
  ReloadNode(node_id);
  std::vector<Candidate> moving;
  for (auto& group : store_.LoadGroups("Placed", node_id)) {
    moving.push_back(Candidate{group, group.placement_generation, node_id});
  }
  auto moved = PlacePass(std::move(moving));
  v1::NodeAdminReply reply;
  reply.set_ok(true);
  reply.set_moved_groups(static_cast<int32_t>(moved.size()));
  return reply;
}

}  // namespace skiff::scheduler
