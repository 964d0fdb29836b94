#pragma once

// The billing service over its ports: meters groups from the lifecycle events on JetStream,
// closes intervals whose stop was lost (reconciling against node heartbeats), and answers cost
// queries. One actor: the caller's loop is the only thread that touches it.
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "skiff/billing/meter.h"
#include "skiff/billing/price_sheet.h"
#include "skiff/billing/v1/billing.pb.h"
#include "skiff/node/v1/node.pb.h"

namespace skiff::billing {

// An event a changed batch publishes through billing's outbox (same transaction).
struct OutgoingEvent {
  std::string subject;
  std::string event_id;
  std::string payload;
};

// What one batch changed; the store writes all of it in the transaction that marks the batch's
// events processed, so a crash either keeps all of it or none.
struct BatchChanges {
  std::vector<GroupMeter> meters;
  std::vector<Interval> closed;
  std::vector<HourlyUsage> hourly;   // added to the rollup
  std::vector<OutgoingEvent> outbox;
};

struct CostScope {
  std::string subscription_id;
  std::string resource_group;   // empty: the whole subscription
  std::string group_name;       // empty: every group in scope
};

class BillingStore {
 public:
  virtual ~BillingStore() = default;
  // `fresh[i]` says whether event_ids[i] was never processed before.
  using Decide = std::function<BatchChanges(const std::vector<bool>& fresh, std::map<std::string, GroupMeter>& meters)>;
  // In one transaction: records every id in `event_ids` as processed, loads the meters of
  // `group_ids` (missing ones are absent from the map), runs `decide` and writes its changes.
  virtual void Commit(const std::vector<std::string>& event_ids, const std::vector<std::string>& group_ids,
                      const Decide& decide) = 0;
  virtual std::vector<GroupMeter> OpenMeters() = 0;
  // Remembers heartbeat evidence, so a restarted billing closes a lost interval at the right time.
  virtual void SaveLastSeen(const std::vector<std::pair<std::string, Millis>>& seen) = 0;
  // Closed intervals that overlap [from, to) in scope.
  virtual std::vector<Interval> ClosedIntervals(const CostScope& scope, Millis from, Millis to) = 0;
  // Everything billed and closed so far, per subscription.
  virtual std::map<std::string, double> ClosedCostBySubscription() = 0;
};

struct BillingOptions {
  Millis heartbeat_grace = 2000;        // a heartbeat this long after the start must list the group
  Millis missing_for = 30000;           // ... and it must stay missing this long before we close it
  Millis node_lost_after = 30000;       // a node silent this long: its open groups are closed
  // A batch is split by group into this many transactions committed side by side (Postgres runs
  // each on one core); a group's events always go to the same one, so their order holds.
  int commit_shards = 1;
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

class BillingService {
 public:
  using Clock = std::function<Millis()>;
  BillingService(BillingStore& store, PriceSheet prices, Meter meter, BillingOptions options, Clock clock);

  // Loads the open intervals (at start-up).
  void Start();
  // Applies a batch in stream order. Throws when the store fails: nothing of it was kept, and
  // the caller has the messages delivered again.
  BatchStats HandleBatch(const std::vector<InboundEvent>& events);
  void HandleHeartbeat(const node::v1::NodeHeartbeat& heartbeat);
  // Reconciles open intervals against heartbeats; `caught_up`: the stream has nothing pending,
  // so a missing stop event is really missing rather than not read yet. Returns intervals closed.
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
  void Remember(const GroupMeter& meter);
  // Meters the signals at `indices` (one shard's groups) in one store transaction.
  BatchStats CommitShard(const std::vector<DecodedSignal>& signals, const std::vector<size_t>& indices, Millis now,
                         std::vector<GroupMeter>& changed) const;
  v1::UsageRecord RecordOf(const Interval& interval, const Charge& charge) const;
  // Heartbeat evidence is saved only every tick; the stored meters get what is newer.
  void AddUnsavedEvidence(std::map<std::string, GroupMeter>& meters) const;
  // Adds a closed interval's charge, rollup rows and usage record to a batch.
  void Book(Interval interval, BatchChanges& changes) const;
  void CloseLost(const GroupMeter& meter, const std::string& reason);

  BillingStore& store_;
  PriceSheet prices_;
  Meter meter_;
  BillingOptions options_;
  Clock clock_;
  Millis started_at_ = 0;
  std::map<std::string, GroupMeter> open_;       // group id -> meter, while billed
  std::map<std::string, Millis> missing_since_;  // open groups a later heartbeat did not list
  std::map<std::string, NodeSeen> nodes_;
  std::map<std::string, Millis> unsaved_seen_;   // last_seen advanced since the last save
};

}  // namespace skiff::billing
