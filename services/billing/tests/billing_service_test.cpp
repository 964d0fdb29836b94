#include <gtest/gtest.h>

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <mutex>

#include "skiff/billing/billing_service.h"
#include "skiff/crypto/crypto.h"
#include "skiff/events/v1/group_events.pb.h"
#include "skiff/scheduler/v1/scheduler.pb.h"

namespace skiff::billing {
namespace {

constexpr Millis kT0 = 1'800'000'000'000;

// The store as Postgres keeps it, in memory; `fail_next` makes the next Commit throw, as a lost
// connection would, so nothing of that checkpoint is kept (`fail_group`: the next Commit that
// touches that group). Checkpoints of several shards come from several threads at once.
class MemoryStore : public BillingStore {
 public:
  void Commit(const Checkpoint& checkpoint) override {
    std::lock_guard lock(mutex_);
    for (const auto& meter : checkpoint.meters) {
      if (!fail_group.empty() && meter.group_id == fail_group) {
        fail_group.clear();
        fail_next = true;
      }
    }
    if (fail_next) {
      fail_next = false;
      throw std::runtime_error("connection lost");
    }
    ++commits;
    processed_.insert(processed_.end(), checkpoint.event_ids.begin(), checkpoint.event_ids.end());
    for (const auto& meter : checkpoint.meters) meters_[meter.group_id] = meter;
    for (const auto& [interval, charge] : checkpoint.closed) {
      intervals.push_back(interval);
      records.push_back(UsageRecordOf(interval, charge, "USD"));
    }
    for (const auto& row : checkpoint.hourly) hourly_cost[row.subscription_id] += row.charge.cost;
  }
  std::vector<GroupMeter> LoadMeters() override {
    std::vector<GroupMeter> all;
    for (const auto& [id, meter] : meters_) all.push_back(meter);
    return all;
  }
  std::vector<std::string> ProcessedSince(Millis) override { return processed_; }
  std::vector<Interval> ClosedIntervals(const CostScope& scope, Millis from, Millis to) override {
    std::vector<Interval> out;
    for (const auto& i : intervals) {
      if (i.subscription_id == scope.subscription_id && i.end > from && i.start < to &&
          (scope.resource_group.empty() || scope.resource_group == i.resource_group) &&
          (scope.group_name.empty() || scope.group_name == i.name)) {
        out.push_back(i);
      }
    }
    return out;
  }
  std::map<std::string, double> ClosedCostBySubscription() override { return hourly_cost; }

  bool fail_next = false;
  std::string fail_group;
  int commits = 0;
  std::vector<Interval> intervals;
  std::vector<v1::UsageRecord> records;
  std::map<std::string, double> hourly_cost;

 private:
  std::mutex mutex_;
  std::vector<std::string> processed_;
  std::map<std::string, GroupMeter> meters_;
};

// Event ids are UUIDs; tests name them by a short word.
std::string Id(const std::string& name) { return crypto::NameUuid(name); }

google::protobuf::Timestamp At(Millis seconds) {
  return google::protobuf::util::TimeUtil::MillisecondsToTimestamp(kT0 + seconds * 1000);
}

events::v1::GroupRef Ref(const std::string& group_id, const std::string& name = "web") {
  events::v1::GroupRef ref;
  ref.set_subscription_id("sub");
  ref.set_resource_group("rg");
  ref.set_name(name);
  ref.set_group_id(group_id);
  return ref;
}

InboundEvent Created(const std::string& event_id, const std::string& group_id, Millis at, double cpu, double gb,
                     const std::string& priority = "Regular", const std::string& name = "web") {
  events::v1::GroupEvent event;
  event.set_event_id(Id(event_id));
  *event.mutable_occurred_at() = At(at);
  *event.mutable_group() = Ref(group_id, name);
  auto* spec = event.mutable_created()->mutable_spec();
  spec->mutable_properties()->set_priority(priority);
  for (int i = 0; i < 2; ++i) {  // two containers: requests add up
    auto* requests = spec->mutable_properties()->add_containers()->mutable_properties()->mutable_resources()->mutable_requests();
    requests->set_cpu(cpu / 2);
    requests->set_memory_in_gb(gb / 2);
  }
  return {"skiff.events.group.created", event.SerializeAsString()};
}

InboundEvent Deleted(const std::string& event_id, const std::string& group_id, Millis at) {
  events::v1::GroupEvent event;
  event.set_event_id(Id(event_id));
  *event.mutable_occurred_at() = At(at);
  *event.mutable_group() = Ref(group_id);
  event.mutable_deleted();
  return {"skiff.events.group.deleted", event.SerializeAsString()};
}

InboundEvent NodeEvent(const std::string& subject, const std::string& event_id, const std::string& group_id, Millis at,
                       const std::string& state, int64_t generation = 1, const std::string& node = "node-a") {
  node::v1::ContainerEvent event;
  event.set_event_id(Id(event_id));
  *event.mutable_occurred_at() = At(at);
  *event.mutable_group() = Ref(group_id);
  event.set_group_state(state);
  event.set_placement_generation(generation);
  event.set_node_id(node);
  return {subject + "." + node, event.SerializeAsString()};  // nodes publish under their own id
}

InboundEvent Placement(const std::string& kind, const std::string& event_id, const std::string& group_id, Millis at,
                       const std::string& reason, int64_t generation) {
  scheduler::v1::PlacementEvent event;
  event.set_event_id(Id(event_id));
  *event.mutable_occurred_at() = At(at);
  *event.mutable_group() = Ref(group_id);
  event.set_kind(kind);
  event.set_reason(reason);
  event.set_placement_generation(generation);
  return {"skiff.events.placement." + kind, event.SerializeAsString()};
}

node::v1::NodeHeartbeat Heartbeat(const std::string& node, Millis at, std::vector<std::pair<std::string, int64_t>> placed) {
  node::v1::NodeHeartbeat heartbeat;
  heartbeat.set_node_id(node);
  *heartbeat.mutable_sent_at() = At(at);
  for (const auto& [id, generation] : placed) {
    auto* entry = heartbeat.add_placed();
    entry->set_group_id(id);
    entry->set_placement_generation(generation);
  }
  return heartbeat;
}

class BillingServiceTest : public ::testing::Test {
 protected:
  BillingServiceTest()
      : service_(store_, PriceSheet("USD", {{0, {0.001, 0.0001, 0.01}, {0.0003, 0.00003, 0.003}}}), Meter(),
                 BillingOptions{},
                 [this] { return now_; }) {
    service_.Start();
  }
  double Seconds() const {
    double total = 0;
    for (const auto& i : store_.intervals) total += static_cast<double>(i.end - i.start) / 1000.0;
    return total;
  }
  void Advance(Millis seconds) { now_ += seconds * 1000; }

  MemoryStore store_;
  Millis now_ = kT0 + 1000 * 1000;  // billing receives the events after they happened
  BillingService service_;
};

TEST_F(BillingServiceTest, RedeliveredBatchIsNotCountedTwice) {
  std::vector<InboundEvent> batch = {
      Created("c", "g1", 0, 1, 2), NodeEvent("skiff.events.container.started", "s", "g1", 5, "Running"),
      NodeEvent("skiff.events.sandbox.state", "t", "g1", 65, "Stopped")};
  Advance(100);
  auto first = service_.HandleBatch(batch);
  EXPECT_EQ(first.applied, 3);
  EXPECT_EQ(first.closed, 1);
  auto again = service_.HandleBatch(batch);  // JetStream redelivers after a lost ack
  EXPECT_EQ(again.duplicates, 3);
  EXPECT_EQ(again.closed, 0);
  ASSERT_EQ(store_.intervals.size(), 1u);
  EXPECT_DOUBLE_EQ(Seconds(), 60);
  ASSERT_EQ(store_.records.size(), 1u);
  const v1::UsageRecord& record = store_.records[0];
  EXPECT_DOUBLE_EQ(record.vcpu_seconds(), 60);
  EXPECT_DOUBLE_EQ(record.gb_seconds(), 120);
  EXPECT_NEAR(record.cost(), 60 * 0.001 + 120 * 0.0001, 1e-12);
  EXPECT_EQ(record.start_event_id(), Id("s"));
  EXPECT_EQ(record.end_event_id(), Id("t"));
  EXPECT_EQ(record.currency(), "USD");
}

TEST_F(BillingServiceTest, DuplicateInsideOneBatchCountsOnce) {
  auto start = NodeEvent("skiff.events.container.started", "s", "g1", 0, "Running");
  auto stop = NodeEvent("skiff.events.sandbox.state", "t", "g1", 10, "Succeeded");
  auto stats = service_.HandleBatch({Created("c", "g1", 0, 1, 1), start, start, stop, stop});
  EXPECT_EQ(stats.duplicates, 2);
  EXPECT_DOUBLE_EQ(Seconds(), 10);
}

TEST_F(BillingServiceTest, FailedCommitKeepsNothingAndTheRetryCountsOnce) {
  std::vector<InboundEvent> batch = {Created("c", "g1", 0, 1, 1),
                                     NodeEvent("skiff.events.container.started", "s", "g1", 0, "Running"),
                                     NodeEvent("skiff.events.sandbox.deleted", "d", "g1", 30, "Deleted")};
  store_.fail_next = true;
  EXPECT_THROW(service_.HandleBatch(batch), std::runtime_error);
  EXPECT_TRUE(store_.intervals.empty());
  service_.HandleBatch(batch);
  EXPECT_DOUBLE_EQ(Seconds(), 30);
  EXPECT_EQ(store_.intervals[0].end_reason, "Removed");
}

// nats-server lets a node publish only subjects that end in its id: a node event whose body
// claims another node is not billed.
TEST(DecodeEventTest, ANodeEventClaimingAnotherNodeIsNotBilled) {
  InboundEvent honest = NodeEvent("skiff.events.container.started", "s", "g1", 5, "Running", 1, "node-a");
  ASSERT_TRUE(DecodeEvent(honest.subject, honest.data));
  EXPECT_EQ(DecodeEvent(honest.subject, honest.data)->signal.kind, SignalKind::kStart);
  EXPECT_FALSE(DecodeEvent("skiff.events.container.started.node-b", honest.data));
  EXPECT_FALSE(DecodeEvent("skiff.events.container.started", honest.data));
  EXPECT_FALSE(DecodeEvent("skiff.events.sandbox.state.node-b",
                           NodeEvent("skiff.events.sandbox.state", "t", "g1", 6, "Stopped", 1, "node-a").data));
}

TEST(BillingServiceShards, ShardsKeepEachGroupsOrderAndACommittedShardSurvivesAnotherFailing) {
  MemoryStore store;
  BillingOptions options;
  options.commit_shards = 2;
  BillingService service(store, PriceSheet("USD", {{0, {0.001, 0.0001, 0}, {}}}), Meter(), options,
                         [] { return kT0 + 3'600'000; });
  service.Start();
  std::vector<InboundEvent> batch;
  for (int g = 0; g < 8; ++g) {
    const std::string group = "g" + std::to_string(g);
    batch.push_back(Created("c" + group, group, 0, 1, 1));
    batch.push_back(NodeEvent("skiff.events.container.started", "s" + group, group, 0, "Running"));
    batch.push_back(NodeEvent("skiff.events.sandbox.state", "t" + group, group, 10 + g, "Stopped"));
  }
  store.fail_group = "g3";
  EXPECT_THROW(service.HandleBatch(batch), std::runtime_error);
  // The other shard committed: its groups are billed, g3's are not.
  ASSERT_FALSE(store.intervals.empty());
  ASSERT_LT(store.intervals.size(), 8u);
  for (const auto& interval : store.intervals) EXPECT_NE(interval.group_id, "g3");

  auto stats = service.HandleBatch(batch);  // the redelivery
  EXPECT_GT(stats.duplicates, 0);
  EXPECT_EQ(stats.applied + stats.duplicates, 24);
  ASSERT_EQ(store.intervals.size(), 8u);
  std::map<std::string, Millis> billed;
  for (const auto& interval : store.intervals) billed[interval.group_id] += interval.end - interval.start;
  for (int g = 0; g < 8; ++g) EXPECT_EQ(billed["g" + std::to_string(g)], (10 + g) * 1000) << g;
  EXPECT_EQ(service.open_groups(), 0u);
}

TEST_F(BillingServiceTest, IgnoresEventsItHasNoUseFor) {
  auto no_uuid = NodeEvent("skiff.events.container.started", "x", "g1", 0, "Running");
  {
    node::v1::ContainerEvent event;
    event.ParseFromString(no_uuid.data);
    event.set_event_id("not-a-uuid");  // cannot be deduplicated: not billed
    no_uuid.data = event.SerializeAsString();
  }
  auto stats = service_.HandleBatch({no_uuid, {"skiff.events.container.pulled", "garbage"},
                                     {"skiff.events.group.created", "\xff\xff not protobuf"},
                                     NodeEvent("skiff.events.sandbox.state", "p", "g1", 0, "Pending"),
                                     Placement("placed", "x", "g1", 0, "", 1)});
  EXPECT_EQ(stats.events, 5);
  EXPECT_EQ(stats.applied, 0);
}

TEST_F(BillingServiceTest, SpotEvictionAndNodeLossCloseAtTheRightTime) {
  service_.HandleBatch({Created("c1", "spot", 0, 1, 1, "Spot"), Created("c2", "reg", 0, 1, 1),
                        NodeEvent("skiff.events.container.started", "s1", "spot", 0, "Running"),
                        NodeEvent("skiff.events.container.started", "s2", "reg", 0, "Running")});
  service_.HandleHeartbeat(Heartbeat("node-a", 20, {{"spot", 1}, {"reg", 1}}));
  service_.HandleBatch({Placement("evicted", "ev", "spot", 25, "SpotEvicted", 2),
                        Placement("rescheduled", "rs", "reg", 50, "NodeLost", 2)});
  ASSERT_EQ(store_.intervals.size(), 2u);
  EXPECT_EQ(store_.intervals[0].end - store_.intervals[0].start, 25'000);  // evicted: at the eviction
  EXPECT_TRUE(store_.intervals[0].resources.spot);
  EXPECT_EQ(store_.intervals[1].end - store_.intervals[1].start, 20'000);  // lost: at the last heartbeat
  EXPECT_EQ(store_.intervals[1].end_reason, "NodeLost");
}

TEST_F(BillingServiceTest, LostStopIsReconciledFromHeartbeats) {
  service_.HandleBatch({Created("c", "g1", 0, 1, 1), NodeEvent("skiff.events.container.started", "s", "g1", 0, "Running")});
  Advance(10);
  service_.HandleHeartbeat(Heartbeat("node-a", 10, {{"g1", 1}}));
  EXPECT_EQ(service_.Tick(true), 0);
  // The group's copy vanished and its stop event never came.
  Advance(5);
  service_.HandleHeartbeat(Heartbeat("node-a", 15, {}));
  EXPECT_EQ(service_.Tick(true), 0);  // missing, not yet for long
  Advance(31);
  service_.HandleHeartbeat(Heartbeat("node-a", 46, {}));
  EXPECT_EQ(service_.Tick(false), 0);  // the stream is behind: the stop may still come
  EXPECT_EQ(service_.Tick(true), 1);
  ASSERT_EQ(store_.intervals.size(), 1u);
  EXPECT_EQ(store_.intervals[0].end - store_.intervals[0].start, 10'000);
  EXPECT_EQ(store_.intervals[0].end_reason, "CopyGone");
  EXPECT_EQ(service_.open_groups(), 0u);
  EXPECT_EQ(service_.Tick(true), 0);
}

TEST_F(BillingServiceTest, SilentNodeClosesItsGroupsAtTheLastHeartbeat) {
  service_.HandleBatch({Created("c", "g1", 0, 1, 1), NodeEvent("skiff.events.container.started", "s", "g1", 0, "Running")});
  Advance(12);
  service_.HandleHeartbeat(Heartbeat("node-a", 12, {{"g1", 1}}));
  Advance(29);
  EXPECT_EQ(service_.Tick(true), 0);
  Advance(2);
  EXPECT_EQ(service_.Tick(true), 1);
  EXPECT_DOUBLE_EQ(Seconds(), 12);
}

TEST_F(BillingServiceTest, RestartedBillingUsesSavedEvidence) {
  service_.HandleBatch({Created("c", "g1", 0, 1, 1), NodeEvent("skiff.events.container.started", "s", "g1", 0, "Running")});
  Advance(20);
  service_.HandleHeartbeat(Heartbeat("node-a", 20, {{"g1", 1}}));
  service_.Tick(true);  // saves last_seen
  BillingService restarted(store_, service_.prices(), Meter(), BillingOptions{}, [this] { return now_; });
  restarted.Start();
  EXPECT_EQ(restarted.open_groups(), 1u);
  Advance(31);  // the node never speaks again
  EXPECT_EQ(restarted.Tick(true), 1);
  EXPECT_DOUBLE_EQ(Seconds(), 20);
}

TEST_F(BillingServiceTest, CostsByGroupIntervalAndRange) {
  service_.HandleBatch({Created("c1", "g1", 0, 2, 4), Created("c2", "g2", 0, 1, 1, "Regular", "db"),
                        NodeEvent("skiff.events.container.started", "s1", "g1", 0, "Running"),
                        NodeEvent("skiff.events.sandbox.state", "t1", "g1", 100, "Stopped"),
                        NodeEvent("skiff.events.container.started", "s2", "g2", 50, "Running")});
  now_ = kT0 + 150'000;
  v1::CostRequest request;
  request.set_subscription_id("sub");
  *request.mutable_from() = At(0);
  *request.mutable_to() = At(200);
  auto by_group = service_.Costs(request);
  ASSERT_TRUE(by_group.ok());
  ASSERT_EQ(by_group.lines_size(), 2);
  EXPECT_DOUBLE_EQ(by_group.lines(0).seconds() + by_group.lines(1).seconds(), 200);  // 100 closed + 100 open
  EXPECT_NEAR(by_group.total_cost(), 100 * (2 * 0.001 + 4 * 0.0001) + 100 * (0.001 + 0.0001), 1e-9);

  request.set_group_by("interval");
  *request.mutable_from() = At(80);
  auto intervals = service_.Costs(request);
  ASSERT_EQ(intervals.lines_size(), 2);
  EXPECT_EQ(intervals.lines(0).start_event_id(), Id("s1"));
  EXPECT_EQ(intervals.lines(0).end_event_id(), Id("t1"));
  EXPECT_DOUBLE_EQ(intervals.lines(0).seconds(), 20);  // clipped to the range
  EXPECT_TRUE(intervals.lines(1).open());

  request.set_group_by("subscription");
  EXPECT_EQ(service_.Costs(request).lines_size(), 1);
  request.set_group_by("weekday");
  EXPECT_EQ(service_.Costs(request).error_code(), "InvalidGroupBy");
  request.set_group_by("group");
  *request.mutable_to() = At(10);
  EXPECT_EQ(service_.Costs(request).error_code(), "InvalidTimeRange");
}

TEST_F(BillingServiceTest, LiveCostAddsClosedAndRunning) {
  service_.HandleBatch({Created("c1", "g1", 0, 1, 0), Created("c2", "g2", 0, 1, 0),
                        NodeEvent("skiff.events.container.started", "s1", "g1", 0, "Running"),
                        NodeEvent("skiff.events.sandbox.state", "t1", "g1", 10, "Succeeded"),
                        NodeEvent("skiff.events.container.started", "s2", "g2", 0, "Running")});
  now_ = kT0 + 20'000;
  auto live = service_.Live();
  ASSERT_EQ(live.subscriptions_size(), 1);
  EXPECT_EQ(live.subscriptions(0).running_groups(), 1);
  EXPECT_NEAR(live.subscriptions(0).cost_so_far(), 10 * 0.001 + 20 * 0.001, 1e-12);
  EXPECT_NEAR(live.subscriptions(0).cost_per_hour(), 3600 * 0.001, 1e-9);
}

TEST_F(BillingServiceTest, StagedBatchesCommitTogetherAndCostsSeeThemBefore) {
  service_.Apply({Created("c", "g1", 0, 1, 0), NodeEvent("skiff.events.container.started", "s", "g1", 0, "Running")});
  service_.Apply({NodeEvent("skiff.events.sandbox.state", "t", "g1", 30, "Stopped"),
                  NodeEvent("skiff.events.container.started", "s", "g1", 0, "Running")});  // a repeat of a staged one
  EXPECT_EQ(service_.staged_events(), 3u);
  EXPECT_EQ(store_.commits, 0);
  EXPECT_TRUE(store_.intervals.empty());
  v1::CostRequest request;
  request.set_subscription_id("sub");
  *request.mutable_from() = At(0);
  *request.mutable_to() = At(100);
  EXPECT_DOUBLE_EQ(service_.Costs(request).total_cost(), 30 * 0.001);  // staged, yet counted
  EXPECT_NEAR(service_.Live().subscriptions(0).cost_so_far(), 30 * 0.001, 1e-12);

  EXPECT_EQ(service_.Commit(), 1);
  EXPECT_EQ(store_.commits, 1);
  EXPECT_EQ(service_.staged_events(), 0u);
  EXPECT_DOUBLE_EQ(Seconds(), 30);
  EXPECT_DOUBLE_EQ(service_.Costs(request).total_cost(), 30 * 0.001);  // once, not twice
  EXPECT_EQ(service_.Commit(), 0);  // nothing staged: no transaction
  EXPECT_EQ(store_.commits, 1);
}

TEST_F(BillingServiceTest, FailedCheckpointUndoesTheMetersAndTheRedeliveryCountsOnce) {
  service_.HandleBatch({Created("c", "g1", 0, 1, 0), NodeEvent("skiff.events.container.started", "s1", "g1", 0, "Running")});
  std::vector<InboundEvent> first = {NodeEvent("skiff.events.sandbox.state", "t1", "g1", 10, "Stopped"),
                                     Created("c2", "g2", 0, 1, 0)};
  std::vector<InboundEvent> second = {NodeEvent("skiff.events.container.started", "s2", "g1", 20, "Running"),
                                      NodeEvent("skiff.events.container.started", "s3", "g2", 5, "Running")};
  service_.Apply(first);
  service_.Apply(second);
  EXPECT_EQ(service_.open_groups(), 2u);
  store_.fail_next = true;
  EXPECT_THROW(service_.Commit(), std::runtime_error);
  // Back to the last checkpoint: g1 open since 0, g2 unknown.
  EXPECT_EQ(service_.open_groups(), 1u);
  EXPECT_TRUE(store_.intervals.empty());
  // JetStream delivers both batches again.
  auto again = service_.Apply(first);
  EXPECT_EQ(again.applied, 2);
  service_.Apply(second);
  service_.Commit();
  EXPECT_DOUBLE_EQ(Seconds(), 10);
  EXPECT_EQ(service_.open_groups(), 2u);
}

TEST_F(BillingServiceTest, RestartedBillingRemembersWhatItProcessed) {
  std::vector<InboundEvent> batch = {Created("c", "g1", 0, 1, 0),
                                     NodeEvent("skiff.events.container.started", "s", "g1", 0, "Running"),
                                     NodeEvent("skiff.events.sandbox.state", "t", "g1", 40, "Stopped")};
  service_.HandleBatch(batch);
  BillingService restarted(store_, service_.prices(), Meter(), BillingOptions{}, [this] { return now_; });
  restarted.Start();
  auto stats = restarted.HandleBatch(batch);  // an old publish of the same events, again
  EXPECT_EQ(stats.duplicates, 3);
  EXPECT_DOUBLE_EQ(Seconds(), 40);
  ASSERT_EQ(store_.intervals.size(), 1u);
}

TEST_F(BillingServiceTest, DeleteOfTheGroupClosesIt) {
  service_.HandleBatch({Created("c", "g1", 0, 1, 1), NodeEvent("skiff.events.container.started", "s", "g1", 0, "Running"),
                        Deleted("d", "g1", 42)});
  EXPECT_DOUBLE_EQ(Seconds(), 42);
  EXPECT_EQ(store_.intervals[0].end_reason, "Deleted");
}

}  // namespace
}  // namespace skiff::billing
