#include "skiff/scheduler/placement.h"

#include <algorithm>
#include <limits>
#include <sstream>

namespace skiff::scheduler {

namespace {
constexpr double kEpsilon = 1e-6;  // cpu and memory are decimals from JSON

std::string Describe(const GroupDemand& demand) {
  std::ostringstream text;
  text << "Resource requested: '" << demand.requests.cpu << "' CPU '" << demand.requests.memory_gb
       << "' memory";
  if (demand.requests.gpu > 0) text << " '" << demand.requests.gpu << "' GPU";
  text << " '" << demand.os_type << "' OS";
  if (demand.microvm) text << " 'MicroVM' isolation";
  return text.str();
}
}  // namespace

Resources& Resources::operator+=(const Resources& other) {
  cpu += other.cpu;
  memory_gb += other.memory_gb;
  gpu += other.gpu;
  return *this;
}

Resources& Resources::operator-=(const Resources& other) {
  cpu -= other.cpu;
  memory_gb -= other.memory_gb;
  gpu -= other.gpu;
  return *this;
}

uint32_t PortKey(const std::string& protocol, int port) {
  const bool udp = protocol == "UDP" || protocol == "udp" || protocol == "Udp";
  return (udp ? 0x10000u : 0u) | static_cast<uint32_t>(port & 0xffff);
}

const char* ConditionName(NodeCondition condition) {
  switch (condition) {
    case NodeCondition::kReady: return "Ready";
    case NodeCondition::kCordoned: return "Cordoned";
    case NodeCondition::kDraining: return "Draining";
    case NodeCondition::kLost: return "Lost";
  }
  return "Ready";
}

NodeCondition ParseCondition(const std::string& name) {
  if (name == "Cordoned") return NodeCondition::kCordoned;
  if (name == "Draining") return NodeCondition::kDraining;
  if (name == "Lost") return NodeCondition::kLost;
  return NodeCondition::kReady;
}

std::vector<PlacementCore::Index*> PlacementCore::IndexesFor(const NodeSlot& node) {
  return {&by_os_[node.spec.os_type], &by_zone_[{node.spec.os_type, node.spec.zone}]};
}

void PlacementCore::Unindex(uint32_t slot) {
  NodeSlot& node = nodes_[slot];
  if (!node.indexed) return;
  for (Index* index : IndexesFor(node)) index->erase({node.indexed_free_cpu, slot});
  node.indexed = false;
}

void PlacementCore::Reindex(uint32_t slot) {
  Unindex(slot);
  NodeSlot& node = nodes_[slot];
  if (node.spec.condition != NodeCondition::kReady) return;
  node.indexed_free_cpu = node.spec.capacity.cpu - node.requested.cpu;
  for (Index* index : IndexesFor(node)) index->insert({node.indexed_free_cpu, slot});
  node.indexed = true;
}

void PlacementCore::UpsertNode(const NodeSpec& spec) {
  auto it = slot_of_.find(spec.node_id);
  if (it == slot_of_.end()) {
    uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
      nodes_[slot] = NodeSlot{};
    } else {
      slot = static_cast<uint32_t>(nodes_.size());
      nodes_.emplace_back();
    }
    nodes_[slot].spec = spec;
    slot_of_[spec.node_id] = slot;
    Reindex(slot);
    return;
  }
  // A heartbeat: the node's own facts change; its condition and version are the store's.
  Unindex(it->second);
  NodeSlot& node = nodes_[it->second];
  node.spec.zone = spec.zone;
  node.spec.os_type = spec.os_type;
  node.spec.capacity = spec.capacity;
  node.spec.microvm = spec.microvm;
  Reindex(it->second);
}

void PlacementCore::RemoveNode(const std::string& node_id) {
  auto it = slot_of_.find(node_id);
  if (it == slot_of_.end()) return;
  const uint32_t slot = it->second;
  Unindex(slot);
  for (const auto& [group_id, demand] : nodes_[slot].groups) group_slot_.erase(group_id);
  with_spot_.erase(slot);
  nodes_[slot] = NodeSlot{};
  free_slots_.push_back(slot);
  slot_of_.erase(it);
}

void PlacementCore::SetCondition(const std::string& node_id, NodeCondition condition) {
  auto it = slot_of_.find(node_id);
  if (it == slot_of_.end()) return;
  nodes_[it->second].spec.condition = condition;
  Reindex(it->second);
}

void PlacementCore::Assign(const std::string& node_id, const GroupDemand& demand, int64_t version) {
  auto it = slot_of_.find(node_id);
  if (it == slot_of_.end()) return;
  if (group_slot_.count(demand.group_id)) Release(demand.group_id, version);
  const uint32_t slot = it->second;
  NodeSlot& node = nodes_[slot];
  Unindex(slot);
  node.requested += demand.requests;
  node.limited += demand.limits;
  if (demand.spot) {
    node.spot_requested += demand.requests;
    with_spot_.insert(slot);
  }
  for (uint32_t port : demand.public_ports) node.ports.insert(port);
  node.groups[demand.group_id] = demand;
  node.spec.version = version;
  group_slot_[demand.group_id] = slot;
  Reindex(slot);
}

void PlacementCore::Release(const std::string& group_id, int64_t version) {
  auto it = group_slot_.find(group_id);
  if (it == group_slot_.end()) return;
  const uint32_t slot = it->second;
  group_slot_.erase(it);
  NodeSlot& node = nodes_[slot];
  auto group = node.groups.find(group_id);
  if (group == node.groups.end()) return;
  Unindex(slot);
  const GroupDemand& demand = group->second;
  node.requested -= demand.requests;
  node.limited -= demand.limits;
  if (demand.spot) node.spot_requested -= demand.requests;
  for (uint32_t port : demand.public_ports) node.ports.erase(port);
  node.groups.erase(group);
  if (std::none_of(node.groups.begin(), node.groups.end(), [](const auto& g) { return g.second.spot; })) {
    with_spot_.erase(slot);
  }
  node.spec.version = std::max(node.spec.version, version);
  Reindex(slot);
}

void PlacementCore::ResetNode(const NodeSpec& spec, const std::vector<GroupDemand>& placed) {
  RemoveNode(spec.node_id);
  UpsertNode(spec);
  for (const auto& demand : placed) Assign(spec.node_id, demand, spec.version);
}

bool PlacementCore::Fits(const NodeSlot& node, const GroupDemand& demand, const Resources& freed) const {
  const Resources& capacity = node.spec.capacity;
  if (node.spec.os_type != demand.os_type) return false;
  if (demand.microvm && !node.spec.microvm) return false;
  if (node.requested.cpu - freed.cpu + demand.requests.cpu > capacity.cpu + kEpsilon) return false;
  if (node.requested.memory_gb - freed.memory_gb + demand.requests.memory_gb > capacity.memory_gb + kEpsilon) {
    return false;
  }
  if (node.requested.gpu - freed.gpu + demand.requests.gpu > capacity.gpu) return false;
  // Limits may overcommit within the ratio; `freed` counts requests, and an evicted group's
  // limit is at least its request, so this is conservative.
  const double ratio = options_.overcommit_ratio;
  if (node.limited.cpu - freed.cpu + demand.limits.cpu > capacity.cpu * ratio + kEpsilon) return false;
  if (node.limited.memory_gb - freed.memory_gb + demand.limits.memory_gb > capacity.memory_gb * ratio + kEpsilon) {
    return false;
  }
  if (!demand.zones.empty() &&
      std::find(demand.zones.begin(), demand.zones.end(), node.spec.zone) == demand.zones.end()) {
    return false;
  }
  return true;
}

bool PlacementCore::PortsFree(const NodeSlot& node, const GroupDemand& demand,
                              const std::vector<std::string>& evicted) const {
  for (uint32_t port : demand.public_ports) {
    if (!node.ports.count(port)) continue;
    bool freed = false;
    for (const auto& id : evicted) {
      const auto& victim = node.groups.at(id);
      freed = freed || std::find(victim.public_ports.begin(), victim.public_ports.end(), port) !=
                           victim.public_ports.end();
    }
    if (!freed) return false;
  }
  return true;
}

std::vector<const PlacementCore::Index*> PlacementCore::CandidateIndexes(const GroupDemand& demand) const {
  std::vector<const Index*> indexes;
  if (demand.zones.empty()) {
    if (auto it = by_os_.find(demand.os_type); it != by_os_.end()) indexes.push_back(&it->second);
    return indexes;
  }
  for (const auto& zone : demand.zones) {
    if (auto it = by_zone_.find({demand.os_type, zone}); it != by_zone_.end()) indexes.push_back(&it->second);
  }
  return indexes;
}

PlacementDecision PlacementCore::Place(const GroupDemand& demand) const {
  PlacementDecision decision;
  const bool spread = options_.strategy == Strategy::kSpread;
  double best_key = spread ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  int64_t best_slot = -1;
  const Resources none;
  for (const Index* index : CandidateIndexes(demand)) {
    const double needed = demand.requests.cpu - kEpsilon;
    if (spread) {
      for (auto it = index->rbegin(); it != index->rend() && it->first >= needed; ++it) {
        const NodeSlot& node = nodes_[it->second];
        if (Fits(node, demand, none) && PortsFree(node, demand, {})) {
          if (it->first > best_key) best_key = it->first, best_slot = it->second;
          break;
        }
      }
    } else {
      for (auto it = index->lower_bound({needed, 0}); it != index->end(); ++it) {
        const NodeSlot& node = nodes_[it->second];
        if (Fits(node, demand, none) && PortsFree(node, demand, {})) {
          if (it->first < best_key) best_key = it->first, best_slot = it->second;
          break;
        }
      }
    }
  }
  if (best_slot >= 0) {
    decision.placed = true;
    decision.node_id = nodes_[best_slot].spec.node_id;
    decision.node_version = nodes_[best_slot].spec.version;
    return decision;
  }
  if (!demand.spot) {
    decision = PlaceWithEviction(demand);
    if (decision.placed) return decision;
  }
  decision.reason = WhyNothingFits(demand, &decision.never_fits);
  return decision;
}

PlacementDecision PlacementCore::PlaceWithEviction(const GroupDemand& demand) const {
  // Regular work may take the room Spot groups use: on each node with Spot groups, evict the
  // largest first until the group fits; prefer the node needing the fewest evictions, then the
  // least evicted cpu.
  PlacementDecision best;
  size_t best_count = std::numeric_limits<size_t>::max();
  double best_cpu = std::numeric_limits<double>::infinity();
  for (uint32_t slot : with_spot_) {
    const NodeSlot& node = nodes_[slot];
    if (node.spec.condition != NodeCondition::kReady) continue;
    std::vector<const GroupDemand*> spot;
    for (const auto& [id, group] : node.groups) {
      if (group.spot) spot.push_back(&group);
    }
    std::sort(spot.begin(), spot.end(), [](const GroupDemand* a, const GroupDemand* b) {
      return a->requests.cpu != b->requests.cpu ? a->requests.cpu > b->requests.cpu : a->group_id < b->group_id;
    });
    Resources freed;
    std::vector<std::string> victims;
    for (const GroupDemand* victim : spot) {
      if (victims.size() >= best_count) break;
      victims.push_back(victim->group_id);
      freed += victim->requests;
      if (Fits(node, demand, freed) && PortsFree(node, demand, victims)) {
        if (victims.size() < best_count || (victims.size() == best_count && freed.cpu < best_cpu)) {
          best_count = victims.size();
          best_cpu = freed.cpu;
          best.placed = true;
          best.node_id = node.spec.node_id;
          best.node_version = node.spec.version;
          best.evict = victims;
        }
        break;
      }
    }
  }
  return best;
}

std::string PlacementCore::WhyNothingFits(const GroupDemand& demand, bool* never) const {
  // A group larger than every node (of its OS, in its zones) can never run: it fails at once.
  // With no node known at all the scheduler may have just started, so the group waits.
  bool any_node = false, could_fit = false, any_ready = false;
  for (const auto& [id, slot] : slot_of_) {
    const NodeSlot& node = nodes_[slot];
    any_node = true;
    if (node.spec.condition == NodeCondition::kReady) any_ready = true;
    NodeSlot empty;
    empty.spec = node.spec;
    if (Fits(empty, demand, Resources{})) could_fit = true;
  }
  *never = any_node && !could_fit;
  std::string text;
  bool any_microvm = false;
  for (const auto& [id, slot] : slot_of_) any_microvm = any_microvm || nodes_[slot].spec.microvm;
  if (*never && demand.microvm && !any_microvm) {
    text = "No node offers MicroVM isolation. " + Describe(demand);
  } else if (*never) {
    text = "The container group is larger than any node can hold. " + Describe(demand);
  } else if (!any_ready) {
    text = "No node is ready to run container groups. " + Describe(demand);
  } else {
    text = "The requested resource is not available at this moment; the group is placed when capacity frees up. " +
           Describe(demand);
  }
  if (!demand.zones.empty()) text += " in zone '" + demand.zones.front() + "'";
  return text;
}

std::vector<PlacementCore::NodeView> PlacementCore::Nodes() const {
  std::vector<NodeView> views;
  for (const auto& [id, slot] : slot_of_) {
    const NodeSlot& node = nodes_[slot];
    views.push_back({node.spec, node.requested, node.limited, node.groups.size()});
  }
  std::sort(views.begin(), views.end(), [](const auto& a, const auto& b) { return a.spec.node_id < b.spec.node_id; });
  return views;
}

std::optional<PlacementPolicy::NodeView> PlacementCore::Node(const std::string& node_id) const {
  auto it = slot_of_.find(node_id);
  if (it == slot_of_.end()) return std::nullopt;
  const auto& node = nodes_[it->second];
  return NodeView{node.spec, node.requested, node.limited, node.groups.size()};
}

void PlacementCore::SetVersion(const std::string& node_id, int64_t version) {
  auto it = slot_of_.find(node_id);
  if (it != slot_of_.end()) nodes_[it->second].spec.version = version;
}

std::string PlacementCore::NodeOf(const std::string& group_id) const {
  auto it = group_slot_.find(group_id);
  return it == group_slot_.end() ? std::string() : nodes_[it->second].spec.node_id;
}

std::vector<std::string> PlacementCore::GroupsOn(const std::string& node_id) const {
  std::vector<std::string> ids;
  auto it = slot_of_.find(node_id);
  if (it == slot_of_.end()) return ids;
  for (const auto& [id, demand] : nodes_[it->second].groups) ids.push_back(id);
  return ids;
}

int64_t PlacementCore::VersionOf(const std::string& node_id) const {
  auto it = slot_of_.find(node_id);
  return it == slot_of_.end() ? -1 : nodes_[it->second].spec.version;
}

}  // namespace skiff::scheduler
