#pragma once

// The gateway's read model of a group's runtime: what the scheduler and the node report,
// folded into ARM's provisioningState and instanceView. Pure: events in, view out.
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "skiff/containerinstance/v1/container_group.pb.h"

namespace skiff::gateway {

struct GroupRuntime {
  std::string group_id;
  int64_t version = 0;                 // bumped on every change (the view's cache key)
  int64_t placement_generation = 0;    // of the copy the view follows; older copies are ignored
  std::string provisioning_state;      // empty: nothing heard yet (the stored Pending stands)
  std::string node_id;
  containerinstance::v1::ContainerGroupInstanceView group;                 // state + group events
  std::map<std::string, containerinstance::v1::ContainerInstanceView> containers;
  std::vector<std::string> recent_event_ids;  // newest last; a redelivery of one of them is skipped
};

// What an event on skiff.events.{placement,sandbox,container}.* says about a group.
struct RuntimeEvent {
  std::string event_id;
  std::string group_id;
  std::string source;             // placement | sandbox | container
  std::string kind;               // the subject's last word: placed, state, started, ...
  int64_t placement_generation = 0;
  std::string node_id;
  std::string container;
  std::string name;               // ACI's event name
  std::string message;
  std::string type;               // Normal | Warning
  std::string group_state;        // sandbox/container events: Pending | Running | Succeeded | Failed | Stopped
  std::string time;               // RFC 3339
  std::optional<containerinstance::v1::ContainerInstanceView> container_view;
};

// nullopt for subjects the read model does not follow (or a payload that does not parse).
std::optional<RuntimeEvent> DecodeRuntimeEvent(const std::string& subject, const std::string& data);

// Folds one event in; false when it changed nothing (a stale copy's event, or one applied before).
bool ApplyRuntimeEvent(GroupRuntime& runtime, const RuntimeEvent& event);

// The final answer for the group's create/update operation, once there is one: Succeeded when
// the group runs (or ran to completion), Failed when it could not be placed or started.
std::optional<std::string> OperationOutcome(const GroupRuntime& runtime);

// Writes provisioningState and the instance views into a group document.
void MergeRuntime(const GroupRuntime& runtime, containerinstance::v1::ContainerGroup& view);

// Where the runtimes live (Postgres: gateway.group_runtime).
class RuntimeStore {
 public:
  virtual ~RuntimeStore() = default;
  // Changes the runtimes of `group_ids` and returns those to save.
  using Fold = std::function<std::vector<GroupRuntime>(std::map<std::string, GroupRuntime>& runtimes)>;
  // In one transaction: loads the runtimes of `group_ids` (a group never heard of is absent),
  // runs `fold`, saves what it returns, and ends each saved group's in-progress create or update
  // operation when OperationOutcome has an answer.
  virtual void UpdateRuntimes(const std::vector<std::string>& group_ids, const Fold& fold) = 0;
};

// Folds a batch of decoded events, in order, into the stored runtimes.
void ApplyRuntimeBatch(RuntimeStore& store, const std::vector<RuntimeEvent>& events);

}  // namespace skiff::gateway
