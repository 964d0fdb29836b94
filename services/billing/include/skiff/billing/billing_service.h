#pragma once

// The billing service over its ports: meters groups from the lifecycle events on JetStream,
// closes intervals whose stop was lost (reconciling against node heartbeats), and answers cost
// queries. One actor: the caller's loop is the only thread that touches it.
#include <functional>
#include <map>
#include <set>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "skiff/billing/meter.h"
#include "skiff/billing/price_sheet.h"
#include "skiff/billing/v1/billing.pb.h"
#include "skiff/node/v1/node.pb.h"

namespace skiff::billing {

// A closed interval and what it costs, priced when it closed.
struct BilledInterval {
  Interval interval;
  Charge charge;
};

// Everything metering changed since the last checkpoint for one shard of groups. The store writes
// all of it, with the ids of the events that caused it, in one transaction: a crash keeps all of
// it or none, and the events are acknowledged to JetStream only after it commits.
struct Checkpoint {
  std::vector<std::string> event_ids;   // the consumer's position: these are processed
  std::vector<GroupMeter> meters;       // the groups' meters as they are now
  std::vector<BilledInterval> closed;
  std::vector<HourlyUsage> hourly;      // added to the rollup
};

struct CostScope {
  std::string subscription_id;
  std::string resource_group;   // empty: the whole subscription
  std::string group_name;       // empty: every group in scope
};

class BillingStore {
 public:
  virtual ~BillingStore() = default;
  // One transaction; throws if it did not commit (then none of it is kept). Checkpoints of
  // different shards (disjoint groups) may run on several threads at once.
  virtual void Commit(const Checkpoint& checkpoint) = 0;
  // Every meter (billing keeps them all in memory).
  virtual std::vector<GroupMeter> LoadMeters() = 0;
  // The ids of events processed since `since` (billing's clock): the deduplication window.
  virtual std::vector<std::string> ProcessedSince(Millis since) = 0;
  // Closed intervals that overlap [from, to) in scope.
  virtual std::vector<Interval> ClosedIntervals(const CostScope& scope, Millis from, Millis to) = 0;
  // Everything billed and closed so far, per subscription.
  virtual std::map<std::string, double> ClosedCostBySubscription() = 0;
};

struct BillingOptions {
  Millis heartbeat_grace = 2000;        // a heartbeat this long after the start must list the group
  Millis missing_for = 30000;           // ... and it must stay missing this long before we close it
  Millis node_lost_after = 30000;       // a node silent this long: its open groups are closed
  // A checkpoint is split by group into this many transactions committed side by side (Postgres
  // runs each on one core); a group's events always go to the same one, so their order holds.
  int commit_shards = 1;
  Millis dedupe_window = 24LL * 3600 * 1000;  // event ids remembered this long after processing
};

struct InboundEvent {
  std::string subject;
  std::string data;
};

struct BatchStats {
  int events = 0;       // messages in the batch
  int applied = 0;      // fresh billing signals applied
  int duplicates = 0;   // already processed before (redelivery)
  int closed = 0;       // intervals closed
};

// Decodes a lifecycle event into the group it concerns and a meter signal; nullopt for events
// billing has no use for (pulls under the default rule are still returned; the meter decides).
struct DecodedSignal {
  std::string group_id;
  Signal signal;
};
std::optional<DecodedSignal> DecodeEvent(const std::string& subject, const std::string& data);

// The usage record published for a closed interval (its id is stable: derived from the group and
// the interval's start event).
v1::UsageRecord UsageRecordOf(const Interval& interval, const Charge& charge, const std::string& currency);

class BillingService {
 public:
  using Clock = std::function<Millis()>;
  BillingService(BillingStore& store, PriceSheet prices, Meter meter, BillingOptions options, Clock clock);

  // Loads every meter and the processed ids of the deduplication window (at start-up).
  void Start();
  // Meters a batch in stream order, in memory: its effects are staged until Commit. Duplicates
  // (by event id, against everything processed in the window and everything staged) are skipped.
  BatchStats Apply(const std::vector<InboundEvent>& events);
  // Writes what is staged (Checkpoint per shard). Throws when a shard's store transaction fails:
  // that shard's staged changes are undone in memory, and the caller has the staged events
  // delivered again (a shard that committed stays committed; its events return as duplicates).
  // Returns the intervals committed.
  int Commit();
  // Apply + Commit: one batch, one checkpoint.
  BatchStats HandleBatch(const std::vector<InboundEvent>& events);
  size_t staged_events() const { return staged_ids_.size(); }

  void HandleHeartbeat(const node::v1::NodeHeartbeat& heartbeat);
  // Reconciles open intervals against heartbeats; `caught_up`: the stream has nothing pending,
  // so a missing stop event is really missing rather than not read yet. Commits what it closed
  // and the heartbeat evidence: call it with nothing staged. Returns intervals closed.
  int Tick(bool caught_up);

  v1::CostReply Costs(const v1::CostRequest& request);
  v1::LiveCost Live();

  size_t open_groups() const { return open_.size(); }
  const PriceSheet& prices() const { return prices_; }

 private:
  struct NodeSeen {
    Millis heard_at = 0;    // billing's clock
    Millis sent_at = 0;     // the node's clock
    std::set<std::pair<std::string, int64_t>> placed;
  };
  struct EventKey {
    uint64_t high = 0, low = 0;
    bool operator==(const EventKey&) const = default;
  };
  struct EventKeyHash {
    size_t operator()(const EventKey& key) const { return key.high ^ (key.low * 0x9E3779B97F4A7C15ULL); }
  };
  static EventKey KeyOf(const std::string& uuid);
  // Applies one signal to its group's meter, staging what it changes.
  int ApplySignal(const DecodedSignal& decoded, Millis now);
  // Before a group's meter first changes after a checkpoint: keeps what to restore if it fails.
  GroupMeter& Touch(const std::string& group_id);
  void TrackOpen(const GroupMeter& meter);
  void Book(Interval interval);
  void CloseLost(const std::string& group_id, const std::string& reason);
  void Remember(const std::vector<std::string>& event_ids, Millis at);
  void Forget(Millis now);

  BillingStore& store_;
  PriceSheet prices_;
  Meter meter_;
  BillingOptions options_;
  Clock clock_;
  Millis started_at_ = 0;
  std::unordered_map<std::string, GroupMeter> meters_;   // every group billing has heard of
  std::set<std::string> open_;                           // groups being billed now
  std::map<std::string, Millis> missing_since_;          // open groups a later heartbeat did not list
  std::map<std::string, NodeSeen> nodes_;
  // Deduplication: ids processed in the window (with when, to forget them in order).
  std::unordered_set<EventKey, EventKeyHash> processed_;
  std::deque<std::pair<Millis, std::vector<EventKey>>> processed_order_;
  // Staged since the last checkpoint.
  std::vector<std::pair<std::string, std::string>> staged_ids_;       // (group, event id)
  std::unordered_set<EventKey, EventKeyHash> staged_keys_;
  std::unordered_map<std::string, std::optional<GroupMeter>> before_;  // nullopt: the group was new
  std::set<std::string> dirty_;                                        // meters to write
  std::vector<BilledInterval> staged_closed_;
  std::vector<HourlyUsage> staged_hourly_;
};

}  // namespace skiff::billing
