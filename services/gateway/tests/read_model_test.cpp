// The read model: placement, sandbox and container events folded into provisioningState and
// instanceView, and the operation outcome they imply.
#include <gtest/gtest.h>

#include <google/protobuf/util/time_util.h>

#include "skiff/gateway/read_model.h"
#include "skiff/node/v1/node.pb.h"
#include "skiff/scheduler/v1/scheduler.pb.h"

namespace skiff::gateway {
namespace {

const std::string kGroup = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";

RuntimeEvent Placement(const std::string& kind, int64_t generation, const std::string& node = "n1",
                       const std::string& reason = "") {
  scheduler::v1::PlacementEvent event;
  event.mutable_group()->set_group_id(kGroup);
  event.set_kind(kind == "placed" ? "Placed" : kind);
  event.set_node_id(node);
  event.set_placement_generation(generation);
  event.set_reason(reason);
  *event.mutable_occurred_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(1800000000000);
  return *DecodeRuntimeEvent("skiff.events.placement." + kind, event.SerializeAsString());
}

RuntimeEvent Node(const std::string& subject, const std::string& name, const std::string& state, int64_t generation,
                  const std::string& container = "", const std::string& container_state = "", int restarts = 0,
                  const std::string& message = "") {
  node::v1::ContainerEvent event;
  event.mutable_group()->set_group_id(kGroup);
  event.set_name(name);
  event.set_message(message.empty() ? name : message);
  event.set_type("Normal");
  event.set_group_state(state);
  event.set_placement_generation(generation);
  event.set_container(container);
  event.set_node_id("n1");
  *event.mutable_occurred_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(1800000001000);
  if (!container_state.empty()) {
    event.mutable_instance_view()->set_restart_count(restarts);
    event.mutable_instance_view()->mutable_current_state()->set_state(container_state);
    event.mutable_instance_view()->mutable_current_state()->set_start_time(std::to_string(restarts));
  }
  return *DecodeRuntimeEvent(subject + ".n1", event.SerializeAsString());  // nodes publish under their own id
}

// nats-server lets a node publish only subjects that end in its id: an event whose subject names
// one node and whose body claims another is not believed.
TEST(ReadModelTest, AnEventClaimingAnotherNodeIsDropped) {
  node::v1::ContainerEvent event;
  event.mutable_group()->set_group_id(kGroup);
  event.set_name("Started");
  event.set_node_id("n1");
  EXPECT_TRUE(DecodeRuntimeEvent("skiff.events.container.started.n1", event.SerializeAsString()));
  EXPECT_FALSE(DecodeRuntimeEvent("skiff.events.container.started.n2", event.SerializeAsString()));
  EXPECT_FALSE(DecodeRuntimeEvent("skiff.events.container.started", event.SerializeAsString()));
  event.set_node_id("");
  EXPECT_FALSE(DecodeRuntimeEvent("skiff.events.container.started.n1", event.SerializeAsString()));
}

TEST(ReadModelTest, CreateRunsToSucceededWithInstanceViews) {
  GroupRuntime runtime;
  EXPECT_FALSE(OperationOutcome(runtime));
  ApplyRuntimeEvent(runtime, Placement("placed", 1));
  EXPECT_EQ(runtime.provisioning_state, "Creating");
  EXPECT_EQ(runtime.group.state(), "Pending");
  ApplyRuntimeEvent(runtime, Node("skiff.events.container.pulling", "Pulling", "Pending", 1, "web"));
  ApplyRuntimeEvent(runtime, Node("skiff.events.container.started", "Started", "Running", 1, "web", "Running"));
  ApplyRuntimeEvent(runtime, Node("skiff.events.sandbox.state", "StateChanged", "Running", 1));
  EXPECT_EQ(runtime.provisioning_state, "Succeeded");
  EXPECT_EQ(OperationOutcome(runtime), "Succeeded");
  EXPECT_EQ(runtime.group.state(), "Running");
  EXPECT_EQ(runtime.group.events_size(), 1);  // Placed; StateChanged is not an event users see
  const auto& web = runtime.containers.at("web");
  EXPECT_EQ(web.current_state().state(), "Running");
  ASSERT_EQ(web.events_size(), 2);
  EXPECT_EQ(web.events(0).name(), "Pulling");

  containerinstance::v1::ContainerGroup view;
  view.mutable_properties()->set_provisioning_state("Pending");
  view.mutable_properties()->add_containers()->set_name("web");
  MergeRuntime(runtime, view);
  EXPECT_EQ(view.properties().provisioning_state(), "Succeeded");
  EXPECT_EQ(view.properties().instance_view().state(), "Running");
  EXPECT_EQ(view.properties().containers(0).properties().instance_view().current_state().state(), "Running");
}

TEST(ReadModelTest, RestartsKeepThePreviousStateAndCountRepeats) {
  GroupRuntime runtime;
  ApplyRuntimeEvent(runtime, Node("skiff.events.container.started", "Started", "Running", 1, "web", "Running", 0));
  ApplyRuntimeEvent(runtime, Node("skiff.events.container.terminated", "Terminated", "Running", 1, "web", "Terminated", 0));
  ApplyRuntimeEvent(runtime, Node("skiff.events.container.backoff", "BackOff", "Running", 1, "web", "Waiting", 1));
  ApplyRuntimeEvent(runtime, Node("skiff.events.container.backoff", "BackOff", "Running", 1, "web", "Waiting", 1));
  const auto& web = runtime.containers.at("web");
  EXPECT_EQ(web.restart_count(), 1);
  EXPECT_EQ(web.current_state().state(), "Waiting");
  EXPECT_EQ(web.previous_state().state(), "Terminated");
  ASSERT_EQ(web.events_size(), 3);
  EXPECT_EQ(web.events(2).count(), 2);  // the same BackOff twice: counted
}

TEST(ReadModelTest, FailuresFailTheOperation) {
  GroupRuntime waiting;
  ApplyRuntimeEvent(waiting, Placement("waiting", 0, "", "InsufficientCapacity"));
  EXPECT_EQ(waiting.provisioning_state, "Pending");
  EXPECT_FALSE(OperationOutcome(waiting));
  ApplyRuntimeEvent(waiting, Placement("failed", 0, "", "ServiceUnavailable"));
  EXPECT_EQ(OperationOutcome(waiting), "Failed");
  EXPECT_EQ(waiting.group.events(1).type(), "Warning");

  GroupRuntime pull;
  ApplyRuntimeEvent(pull, Placement("placed", 1));
  ApplyRuntimeEvent(pull, Node("skiff.events.sandbox.failed", "Failed", "Failed", 1, "", "", 0, "image not found"));
  EXPECT_EQ(OperationOutcome(pull), "Failed");
  EXPECT_EQ(pull.group.events(1).message(), "image not found");
}

TEST(ReadModelTest, StaleCopiesAreIgnoredAndANewCopyStartsClean) {
  GroupRuntime runtime;
  ApplyRuntimeEvent(runtime, Placement("placed", 1));
  ApplyRuntimeEvent(runtime, Node("skiff.events.container.started", "Started", "Running", 1, "web", "Running"));
  ApplyRuntimeEvent(runtime, Node("skiff.events.sandbox.state", "StateChanged", "Running", 1));
  ApplyRuntimeEvent(runtime, Placement("rescheduled", 2, "n1", "NodeLost"));
  EXPECT_TRUE(runtime.containers.empty());
  EXPECT_EQ(runtime.group.state(), "Pending");
  EXPECT_EQ(runtime.provisioning_state, "Succeeded");  // the resource stays provisioned
  EXPECT_FALSE(ApplyRuntimeEvent(runtime, Node("skiff.events.sandbox.state", "StateChanged", "Failed", 1)));
  EXPECT_EQ(runtime.group.state(), "Pending");
}

TEST(ReadModelTest, ARedeliveredEventIsAppliedOnce) {
  GroupRuntime runtime;
  auto backoff = Node("skiff.events.container.backoff", "BackOff", "Running", 1, "web", "Waiting", 1);
  backoff.event_id = "e-1";
  EXPECT_TRUE(ApplyRuntimeEvent(runtime, backoff));
  EXPECT_FALSE(ApplyRuntimeEvent(runtime, backoff));
  EXPECT_EQ(runtime.containers.at("web").events(0).count(), 1);
  backoff.event_id = "e-2";  // the same event again from the node: a repeat, counted
  EXPECT_TRUE(ApplyRuntimeEvent(runtime, backoff));
  EXPECT_EQ(runtime.containers.at("web").events(0).count(), 2);
}

TEST(ReadModelTest, IgnoresWhatItDoesNotFollow) {
  EXPECT_FALSE(DecodeRuntimeEvent("skiff.events.group.created", "x"));
  EXPECT_FALSE(DecodeRuntimeEvent("skiff.events.placement.placed", "\\xff\\xff not protobuf"));
  EXPECT_FALSE(DecodeRuntimeEvent("skiff.events.container.started", ""));  // no group id
}

}  // namespace
}  // namespace skiff::gateway
