#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace skiff::scheduler {

struct Resources {
  double cpu = 0;
  double memory_gb = 0;
  int gpu = 0;
  Resources& operator+=(const Resources& other);
  Resources& operator-=(const Resources& other);
};

// What a group asks of a node: the sums over its containers (see DemandOf in scheduler_core.h).
struct GroupDemand {
  std::string group_id;
  Resources requests;
  Resources limits;             // >= requests; may overcommit a node within the configured ratio
  std::string os_type = "Linux";
  std::vector<std::string> zones;  // empty: any zone
  std::vector<uint32_t> public_ports;  // PortKey(protocol, port)
  bool spot = false;
  bool microvm = false;         // isolation MicroVM: only nodes that offer it
};

uint32_t PortKey(const std::string& protocol, int port);

enum class NodeCondition { kReady, kCordoned, kDraining, kLost };
const char* ConditionName(NodeCondition condition);
NodeCondition ParseCondition(const std::string& name);

struct NodeSpec {
  std::string node_id;
  std::string zone;
  std::string os_type = "Linux";
  Resources capacity;
  bool microvm = false;  // runs MicroVM groups (its heartbeat says so)
  NodeCondition condition = NodeCondition::kReady;
  int64_t version = 0;  // the store's optimistic-concurrency version of this node's placements
};

struct PlacementDecision {
  bool placed = false;
  std::string node_id;
  int64_t node_version = 0;            // the version the decision was made against
  std::vector<std::string> evict;      // Spot groups to evict first (Regular groups only)
  // When not placed: fits no node now (wait) or never (larger than every node: fail at once).
  bool never_fits = false;
  std::string reason;                  // why nothing fits, for the Waiting/Failed event
};

enum class Strategy { kBinPack, kSpread };

// The placement core's port: the scheduler service sees only this, so other policies (and a
// virtual-kubelet provider's view of capacity) fit behind it.
class PlacementPolicy {
 public:
  virtual ~PlacementPolicy() = default;
  virtual void UpsertNode(const NodeSpec& node) = 0;
  virtual void RemoveNode(const std::string& node_id) = 0;
  virtual void SetCondition(const std::string& node_id, NodeCondition condition) = 0;
  // Records a placement (after the store committed it); `version` is the node's new version.
  virtual void Assign(const std::string& node_id, const GroupDemand& demand, int64_t version) = 0;
  virtual void Release(const std::string& group_id, int64_t version) = 0;
  // Forgets every placement on the node and sets its spec (after reloading it from the store).
  virtual void ResetNode(const NodeSpec& node, const std::vector<GroupDemand>& placed) = 0;
  virtual void SetVersion(const std::string& node_id, int64_t version) = 0;
  virtual PlacementDecision Place(const GroupDemand& demand) const = 0;

  struct NodeView {
    NodeSpec spec;
    Resources requested, limited;
    size_t groups = 0;
  };
  virtual std::vector<NodeView> Nodes() const = 0;
  virtual std::optional<NodeView> Node(const std::string& node_id) const = 0;
  virtual std::string NodeOf(const std::string& group_id) const = 0;
  virtual std::vector<std::string> GroupsOn(const std::string& node_id) const = 0;
  virtual int64_t VersionOf(const std::string& node_id) const = 0;  // -1: unknown node
};

// In-memory cluster view with indexes ordered by free cpu per (os, zone), so a placement costs
// O(log n) plus the nodes skipped by the other filters instead of a scan of every node.
// Bin-packing (default) takes the node whose free cpu fits most tightly; spreading the one with
// the most free cpu. Both then check memory, gpu, limit overcommit, public ports and zone.
// Not thread-safe: the service serializes access.
class PlacementCore : public PlacementPolicy {
 public:
  struct Options {
    Strategy strategy = Strategy::kBinPack;
    double overcommit_ratio = 1.0;  // sum of limits may reach capacity x this
  };
  explicit PlacementCore(Options options) : options_(options) {}

  void UpsertNode(const NodeSpec& node) override;
  void RemoveNode(const std::string& node_id) override;
  void SetCondition(const std::string& node_id, NodeCondition condition) override;
  void Assign(const std::string& node_id, const GroupDemand& demand, int64_t version) override;
  void Release(const std::string& group_id, int64_t version) override;
  void ResetNode(const NodeSpec& node, const std::vector<GroupDemand>& placed) override;
  void SetVersion(const std::string& node_id, int64_t version) override;
  PlacementDecision Place(const GroupDemand& demand) const override;
  std::vector<NodeView> Nodes() const override;
  std::optional<NodeView> Node(const std::string& node_id) const override;
  std::string NodeOf(const std::string& group_id) const override;
  std::vector<std::string> GroupsOn(const std::string& node_id) const override;
  int64_t VersionOf(const std::string& node_id) const override;

 private:
  struct NodeSlot {
    NodeSpec spec;
    Resources requested;           // Regular and Spot
    Resources limited;
    Resources spot_requested;
    std::unordered_set<uint32_t> ports;
    std::map<std::string, GroupDemand> groups;
    bool indexed = false;
    double indexed_free_cpu = 0;
  };
  using Index = std::set<std::pair<double, uint32_t>>;  // (free cpu, node slot)

  bool Fits(const NodeSlot& node, const GroupDemand& demand, const Resources& freed) const;
  bool PortsFree(const NodeSlot& node, const GroupDemand& demand, const std::vector<std::string>& evicted) const;
  void Unindex(uint32_t slot);
  void Reindex(uint32_t slot);
  std::vector<Index*> IndexesFor(const NodeSlot& node);
  std::vector<const Index*> CandidateIndexes(const GroupDemand& demand) const;
  PlacementDecision PlaceWithEviction(const GroupDemand& demand) const;
  std::string WhyNothingFits(const GroupDemand& demand, bool* never) const;

  Options options_;
  std::vector<NodeSlot> nodes_;  // slots; a removed node's slot is reused
  std::vector<uint32_t> free_slots_;
  std::unordered_map<std::string, uint32_t> slot_of_;
  std::unordered_map<std::string, uint32_t> group_slot_;
  std::map<std::string, Index> by_os_;                        // os -> index
  std::map<std::pair<std::string, std::string>, Index> by_zone_;  // (os, zone) -> index
  std::set<uint32_t> with_spot_;
};

}  // namespace skiff::scheduler
