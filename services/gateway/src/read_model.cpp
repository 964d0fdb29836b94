#include "skiff/gateway/read_model.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "skiff/bus/subjects.h"
#include "skiff/node/v1/node.pb.h"
#include "skiff/scheduler/v1/scheduler.pb.h"
#include "skiff/timefmt/rfc3339.h"

namespace skiff::gateway {

namespace ci = containerinstance::v1;

namespace {

constexpr int kMaxEvents = 50;          // per list, the newest kept
constexpr size_t kRecentEvents = 64;    // event ids remembered per group for deduplication

std::string TimeText(const google::protobuf::Timestamp& t) {
  return timefmt::FormatTime(std::chrono::system_clock::time_point(
      std::chrono::milliseconds(google::protobuf::util::TimeUtil::TimestampToMilliseconds(t))));
}

bool StartsWith(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// ACI counts repeats: the same name and message again bumps count and lastTimestamp.
void AddEvent(google::protobuf::RepeatedPtrField<ci::Event>& events, const RuntimeEvent& e) {
  if (!events.empty()) {
    auto& last = events[events.size() - 1];
    if (last.name() == e.name && last.message() == e.message) {
      last.set_count(last.count() + 1);
      last.set_last_timestamp(e.time);
      return;
    }
  }
  auto* event = events.Add();
  event->set_count(1);
  event->set_first_timestamp(e.time);
  event->set_last_timestamp(e.time);
  event->set_name(e.name);
  event->set_message(e.message);
  event->set_type(e.type.empty() ? "Normal" : e.type);
  if (events.size() > kMaxEvents) events.DeleteSubrange(0, events.size() - kMaxEvents);
}

}  // namespace

std::optional<RuntimeEvent> DecodeRuntimeEvent(const std::string& subject, const std::string& data) {
  RuntimeEvent event;
  event.kind = subject.substr(subject.rfind('.') + 1);
  if (StartsWith(subject, "skiff.events.placement.")) {
    scheduler::v1::PlacementEvent placement;
    if (!placement.ParseFromString(data) || placement.group().group_id().empty()) return std::nullopt;
    event.source = "placement";
    event.event_id = placement.event_id();
    event.group_id = placement.group().group_id();
    event.placement_generation = placement.placement_generation();
    event.node_id = placement.node_id();
    event.name = placement.kind();
    event.message = placement.message();
    if (!placement.reason().empty() && event.message.empty()) event.message = placement.reason();
    event.type = event.kind == "placed" ? "Normal" : "Warning";
    event.time = TimeText(placement.occurred_at());
    return event;
  }
  const bool sandbox = StartsWith(subject, "skiff.events.sandbox.");
  if (sandbox || StartsWith(subject, "skiff.events.container.")) {
    node::v1::ContainerEvent node_event;
    if (!node_event.ParseFromString(data) || node_event.group().group_id().empty()) return std::nullopt;
    // Only the node named in the subject could publish it: one that claims another is dropped.
    auto parsed = subjects::ParseNodeEvent(subject);
    if (!parsed || !subjects::PublishedBy(subject, node_event.node_id())) return std::nullopt;
    event.kind = parsed->kind;
    event.source = sandbox ? "sandbox" : "container";
    event.event_id = node_event.event_id();
    event.group_id = node_event.group().group_id();
    event.placement_generation = node_event.placement_generation();
    event.node_id = node_event.node_id();
    event.container = node_event.container();
    event.name = node_event.name();
    event.message = node_event.message();
    event.type = node_event.type();
    event.group_state = node_event.group_state();
    event.time = TimeText(node_event.occurred_at());
    if (node_event.has_instance_view()) event.container_view = node_event.instance_view();
    return event;
  }
  return std::nullopt;
}

bool ApplyRuntimeEvent(GroupRuntime& runtime, const RuntimeEvent& e) {
  if (e.placement_generation > 0 && e.placement_generation < runtime.placement_generation) return false;
  if (!e.event_id.empty()) {
    // JetStream redelivers what was not acked before a crash: apply each event once.
    auto& recent = runtime.recent_event_ids;
    if (std::find(recent.begin(), recent.end(), e.event_id) != recent.end()) return false;
    recent.push_back(e.event_id);
    if (recent.size() > kRecentEvents) recent.erase(recent.begin());
  }
  if (e.placement_generation > runtime.placement_generation) {
    // A new copy: what the old one reported no longer describes the group.
    runtime.placement_generation = e.placement_generation;
    runtime.containers.clear();
    if (e.source != "placement" || e.kind == "placed") runtime.node_id = e.node_id;
  }
  ++runtime.version;
  if (e.source == "placement") {
    AddEvent(*runtime.group.mutable_events(), e);
    if (e.kind == "placed") {
      runtime.node_id = e.node_id;
      if (runtime.provisioning_state.empty() || runtime.provisioning_state == "Pending") {
        runtime.provisioning_state = "Creating";
      }
      runtime.group.set_state("Pending");
    } else if (e.kind == "waiting" || e.kind == "evicted" || e.kind == "rescheduled") {
      runtime.group.set_state("Pending");
      if (runtime.provisioning_state.empty()) runtime.provisioning_state = "Pending";
    } else if (e.kind == "failed") {
      runtime.group.set_state("Failed");
      if (runtime.provisioning_state != "Succeeded") runtime.provisioning_state = "Failed";
    }
    return true;
  }
  if (e.source == "sandbox") {
    if (e.name != "StateChanged") AddEvent(*runtime.group.mutable_events(), e);
    if (e.kind == "deleted") return true;  // a copy removed (drain, eviction, delete): state follows from others
    if (!e.group_state.empty()) runtime.group.set_state(e.group_state);
    if (e.group_state == "Running" || e.group_state == "Succeeded") {
      runtime.provisioning_state = "Succeeded";
    } else if (e.group_state == "Failed" && runtime.provisioning_state != "Succeeded") {
      runtime.provisioning_state = "Failed";
    }
    return true;
  }
  // A container's event: its own events and, from the node, its current state.
  auto& view = runtime.containers[e.container];
  AddEvent(*view.mutable_events(), e);
  if (e.container_view) {
    const auto& now = e.container_view->current_state();
    if (view.has_current_state() && (view.current_state().state() != now.state() ||
                                     view.current_state().start_time() != now.start_time())) {
      *view.mutable_previous_state() = view.current_state();
    }
    *view.mutable_current_state() = now;
    view.set_restart_count(e.container_view->restart_count());
  }
  if (!e.group_state.empty()) runtime.group.set_state(e.group_state);
  return true;
}

std::optional<std::string> OperationOutcome(const GroupRuntime& runtime) {
  if (runtime.provisioning_state == "Succeeded" || runtime.provisioning_state == "Failed") {
    return runtime.provisioning_state;
  }
  return std::nullopt;
}

void MergeRuntime(const GroupRuntime& runtime, ci::ContainerGroup& view) {
  auto* properties = view.mutable_properties();
  if (!runtime.provisioning_state.empty()) properties->set_provisioning_state(runtime.provisioning_state);
  *properties->mutable_instance_view() = runtime.group;
  for (auto& container : *properties->mutable_containers()) {
    auto it = runtime.containers.find(container.name());
    if (it != runtime.containers.end()) *container.mutable_properties()->mutable_instance_view() = it->second;
  }
}

void ApplyRuntimeBatch(RuntimeStore& store, const std::vector<RuntimeEvent>& events) {
  if (events.empty()) return;
  std::vector<std::string> group_ids;
  for (const auto& event : events) group_ids.push_back(event.group_id);
  std::sort(group_ids.begin(), group_ids.end());
  group_ids.erase(std::unique(group_ids.begin(), group_ids.end()), group_ids.end());
  store.UpdateRuntimes(group_ids, [&](std::map<std::string, GroupRuntime>& runtimes) {
    std::map<std::string, GroupRuntime*> changed;
    for (const auto& event : events) {
      auto [it, inserted] = runtimes.try_emplace(event.group_id);
      it->second.group_id = event.group_id;
      if (ApplyRuntimeEvent(it->second, event)) changed[event.group_id] = &it->second;
    }
    std::vector<GroupRuntime> save;
    for (const auto& [id, runtime] : changed) save.push_back(*runtime);
    return save;
  });
}

}  // namespace skiff::gateway
