#include "skiff/billing/billing_service.h"

#include <algorithm>
#include <strings.h>

#include <thread>

#include "skiff/crypto/crypto.h"
#include "skiff/events/v1/group_events.pb.h"
#include "skiff/scheduler/v1/scheduler.pb.h"

namespace skiff::billing {

namespace {

Millis MillisOf(const google::protobuf::Timestamp& t) {
  return t.seconds() * 1000 + t.nanos() / 1'000'000;
}

google::protobuf::Timestamp TimestampOf(Millis ms) {
  google::protobuf::Timestamp t;
  const Millis floor_seconds = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
  t.set_seconds(floor_seconds);
  t.set_nanos(static_cast<int32_t>((ms - floor_seconds * 1000) * 1'000'000));
  return t;
}

bool SameName(const std::string& a, const std::string& b) {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool InScope(const CostScope& scope, const GroupMeter& meter) {
  return meter.subscription_id == scope.subscription_id &&
         (scope.resource_group.empty() || SameName(scope.resource_group, meter.resource_group)) &&
         (scope.group_name.empty() || SameName(scope.group_name, meter.name));
}

Resources ResourcesOf(const containerinstance::v1::ContainerGroup& spec) {
  Resources resources;
  for (const auto& container : spec.properties().containers()) {
    const auto& requests = container.properties().resources().requests();
    resources.vcpu += requests.cpu();
    resources.memory_gb += requests.memory_in_gb();
    resources.gpu += requests.gpu().count();
  }
  resources.spot = SameName(spec.properties().priority(), "Spot");
  return resources;
}

std::string Tail(const std::string& subject) { return subject.substr(subject.rfind('.') + 1); }

bool StartsWith(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

}  // namespace

namespace {
std::optional<DecodedSignal> DecodeAnyEvent(const std::string& subject, const std::string& data);
}  // namespace

std::optional<DecodedSignal> DecodeEvent(const std::string& subject, const std::string& data) {
  auto decoded = DecodeAnyEvent(subject, data);
  // Every Skiff event id is a UUID; anything else cannot be deduplicated, so it is not billed.
  if (decoded && !crypto::IsUuid(decoded->signal.event_id)) return std::nullopt;
  return decoded;
}

namespace {

std::optional<DecodedSignal> DecodeAnyEvent(const std::string& subject, const std::string& data) {
  DecodedSignal decoded;
  Signal& signal = decoded.signal;
  const std::string kind = Tail(subject);
  if (StartsWith(subject, "skiff.events.group.")) {
    events::v1::GroupEvent event;
    if (!event.ParseFromString(data) || event.group().group_id().empty()) return std::nullopt;
    decoded.group_id = event.group().group_id();
    signal.event_id = event.event_id();
    signal.at = MillisOf(event.occurred_at());
    if (event.has_created() || event.has_updated()) {
      const auto& spec = event.has_created() ? event.created().spec() : event.updated().spec();
      signal.kind = SignalKind::kSpec;
      signal.subscription_id = event.group().subscription_id();
      signal.resource_group = event.group().resource_group();
      signal.name = event.group().name();
      signal.resources = ResourcesOf(spec);
    } else if (event.has_deleted()) {
      signal.kind = SignalKind::kDeleted;
      signal.reason = "Deleted";
    } else {
      return std::nullopt;
    }
    return decoded;
  }
  if (StartsWith(subject, "skiff.events.container.") || StartsWith(subject, "skiff.events.sandbox.")) {
    node::v1::ContainerEvent event;
    if (!event.ParseFromString(data) || event.group().group_id().empty()) return std::nullopt;
    decoded.group_id = event.group().group_id();
    signal.event_id = event.event_id();
    signal.at = MillisOf(event.occurred_at());
    signal.placement_generation = event.placement_generation();
    signal.node_id = event.node_id();
    const bool container_event = StartsWith(subject, "skiff.events.container.");
    if (container_event && kind == "started") {
      signal.kind = SignalKind::kStart;
    } else if (container_event && kind == "pulling") {
      signal.kind = SignalKind::kPull;
    } else if (!container_event && kind == "state") {
      const std::string& state = event.group_state();
      if (state == "Running") {
        signal.kind = SignalKind::kStart;
      } else if (state == "Succeeded" || state == "Failed" || state == "Stopped") {
        signal.kind = SignalKind::kStop;
        signal.reason = state;
      } else {
        return std::nullopt;
      }
    } else if (!container_event && (kind == "failed" || kind == "deleted")) {
      signal.kind = SignalKind::kStop;
      signal.reason = kind == "failed" ? "Failed" : "Removed";
    } else {
      return std::nullopt;
    }
    return decoded;
  }
  if (StartsWith(subject, "skiff.events.placement.")) {
    scheduler::v1::PlacementEvent event;
    if (!event.ParseFromString(data) || event.group().group_id().empty()) return std::nullopt;
    decoded.group_id = event.group().group_id();
    signal.event_id = event.event_id();
    signal.at = MillisOf(event.occurred_at());
    signal.placement_generation = event.placement_generation();
    signal.reason = event.reason();
    if (kind == "evicted") {
      signal.kind = SignalKind::kStop;  // the node is alive and removes the copy now
    } else if ((kind == "rescheduled" || kind == "failed") && event.reason() == "NodeLost") {
      signal.kind = SignalKind::kLost;  // nobody will report the end: bill to the last evidence
    } else {
      return std::nullopt;
    }
    return decoded;
  }
  return std::nullopt;
}

}  // namespace

BillingService::BillingService(BillingStore& store, PriceSheet prices, Meter meter, BillingOptions options, Clock clock)
    : store_(store), prices_(std::move(prices)), meter_(meter), options_(options), clock_(std::move(clock)) {}

void BillingService::Start() {
  started_at_ = clock_();
  open_.clear();
  for (auto& meter : store_.OpenMeters()) open_[meter.group_id] = std::move(meter);
}

void BillingService::Remember(const GroupMeter& meter) {
  if (meter.open_since) {
    open_[meter.group_id] = meter;
  } else {
    open_.erase(meter.group_id);
    missing_since_.erase(meter.group_id);
    unsaved_seen_.erase(meter.group_id);
  }
}

v1::UsageRecord BillingService::RecordOf(const Interval& interval, const Charge& charge) const {
  v1::UsageRecord record;
  record.set_record_id(crypto::NameUuid("usage:" + interval.group_id + ":" + interval.start_event_id));
  auto* group = record.mutable_group();
  group->set_subscription_id(interval.subscription_id);
  group->set_resource_group(interval.resource_group);
  group->set_name(interval.name);
  group->set_group_id(interval.group_id);
  *record.mutable_started_at() = TimestampOf(interval.start);
  *record.mutable_ended_at() = TimestampOf(interval.end);
  record.set_vcpu(interval.resources.vcpu);
  record.set_memory_gb(interval.resources.memory_gb);
  record.set_gpu(interval.resources.gpu);
  record.set_priority(interval.resources.spot ? "Spot" : "Regular");
  record.set_seconds(charge.seconds);
  record.set_vcpu_seconds(charge.vcpu_seconds);
  record.set_gb_seconds(charge.gb_seconds);
  record.set_gpu_seconds(charge.gpu_seconds);
  record.set_cost(charge.cost);
  record.set_currency(prices_.currency());
  record.set_start_event_id(interval.start_event_id);
  record.set_end_event_id(interval.end_event_id);
  record.set_end_reason(interval.end_reason);
  record.set_node_id(interval.node_id);
  return record;
}

void BillingService::AddUnsavedEvidence(std::map<std::string, GroupMeter>& meters) const {
  for (auto& [group_id, meter] : meters) {
    auto it = open_.find(group_id);
    if (it != open_.end() && it->second.placement_generation == meter.placement_generation) {
      meter.last_seen = std::max(meter.last_seen, it->second.last_seen);
    }
  }
}

void BillingService::Book(Interval interval, BatchChanges& changes) const {
  const Charge charge = prices_.ChargeFor(interval.resources, interval.start, interval.end);
  for (auto& row : Rollup(interval, prices_)) changes.hourly.push_back(std::move(row));
  v1::UsageRecord record = RecordOf(interval, charge);
  changes.outbox.push_back({"skiff.usage.interval", record.record_id(), record.SerializeAsString()});
  changes.closed.push_back(std::move(interval));
}

BatchStats BillingService::CommitShard(const std::vector<DecodedSignal>& signals, const std::vector<size_t>& indices,
                                       Millis now, std::vector<GroupMeter>& changed) const {
  std::vector<std::string> event_ids;
  std::vector<std::string> group_ids;
  event_ids.reserve(indices.size());
  for (size_t i : indices) {
    event_ids.push_back(signals[i].signal.event_id);
    group_ids.push_back(signals[i].group_id);
  }
  std::sort(group_ids.begin(), group_ids.end());
  group_ids.erase(std::unique(group_ids.begin(), group_ids.end()), group_ids.end());

  BatchStats stats;
  store_.Commit(event_ids, group_ids, [&](const std::vector<bool>& fresh, std::map<std::string, GroupMeter>& meters) {
    // May run again if the transaction is retried: start from nothing each time.
    stats = {};
    AddUnsavedEvidence(meters);
    BatchChanges changes;
    std::set<std::string> touched;
    for (size_t k = 0; k < indices.size(); ++k) {
      const DecodedSignal& decoded = signals[indices[k]];
      if (!fresh[k]) {
        ++stats.duplicates;
        continue;
      }
      ++stats.applied;
      GroupMeter& meter = meters[decoded.group_id];
      meter.group_id = decoded.group_id;
      for (auto& interval : meter_.Apply(meter, decoded.signal, now)) {
        Book(std::move(interval), changes);
        ++stats.closed;
      }
      touched.insert(meter.group_id);
    }
    for (const auto& id : touched) changes.meters.push_back(meters[id]);
    changed = changes.meters;
    return changes;
  });
  return stats;
}

BatchStats BillingService::HandleBatch(const std::vector<InboundEvent>& events) {
  std::vector<DecodedSignal> signals;
  signals.reserve(events.size());
  for (const auto& event : events) {
    if (auto decoded = DecodeEvent(event.subject, event.data)) signals.push_back(std::move(*decoded));
  }
  BatchStats stats;
  stats.events = static_cast<int>(events.size());
  if (signals.empty()) return stats;

  const size_t shard_count = static_cast<size_t>(std::max(1, options_.commit_shards));
  std::vector<std::vector<size_t>> shards(shard_count);
  for (size_t i = 0; i < signals.size(); ++i) {
    shards[std::hash<std::string>{}(signals[i].group_id) % shard_count].push_back(i);
  }
  shards.erase(std::remove_if(shards.begin(), shards.end(), [](const auto& s) { return s.empty(); }), shards.end());

  struct ShardOutcome {
    BatchStats stats;
    std::vector<GroupMeter> changed;
    std::exception_ptr error;
  };
  std::vector<ShardOutcome> outcomes(shards.size());
  const Millis now = clock_();
  auto run = [&](size_t s) {
    try {
      outcomes[s].stats = CommitShard(signals, shards[s], now, outcomes[s].changed);
    } catch (...) {
      outcomes[s].changed.clear();
      outcomes[s].error = std::current_exception();
    }
  };
  // The deciding reads only what Remember writes below, after every shard is done.
  std::vector<std::thread> helpers;
  for (size_t s = 1; s < shards.size(); ++s) helpers.emplace_back(run, s);
  run(0);
  for (auto& helper : helpers) helper.join();

  // A shard that committed is kept even if another failed: its events are processed and come
  // again only as duplicates.
  std::exception_ptr first_error;
  for (auto& outcome : outcomes) {
    for (const auto& meter : outcome.changed) Remember(meter);
    if (outcome.error && !first_error) first_error = outcome.error;
    stats.applied += outcome.stats.applied;
    stats.duplicates += outcome.stats.duplicates;
    stats.closed += outcome.stats.closed;
  }
  if (first_error) std::rethrow_exception(first_error);
  return stats;
}

void BillingService::HandleHeartbeat(const node::v1::NodeHeartbeat& heartbeat) {
  NodeSeen& node = nodes_[heartbeat.node_id()];
  node.heard_at = clock_();
  node.sent_at = MillisOf(heartbeat.sent_at());
  node.placed.clear();
  for (const auto& placed : heartbeat.placed()) {
    node.placed.emplace(placed.group_id(), placed.placement_generation());
    auto it = open_.find(placed.group_id());
    if (it == open_.end() || it->second.node_id != heartbeat.node_id()) continue;
    const Millis before = it->second.last_seen;
    Meter::Seen(it->second, placed.placement_generation(), node.sent_at);
    if (it->second.last_seen != before) unsaved_seen_[it->first] = it->second.last_seen;
  }
}

void BillingService::CloseLost(const GroupMeter& meter, const std::string& reason) {
  DecodedSignal decoded;
  decoded.group_id = meter.group_id;
  decoded.signal.kind = SignalKind::kLost;
  // Deterministic, so a retry after a crash cannot close the same interval twice.
  decoded.signal.event_id = crypto::NameUuid("reconcile:" + meter.group_id + ":" + meter.open_event_id);
  decoded.signal.at = meter.last_seen;
  decoded.signal.placement_generation = meter.placement_generation;
  decoded.signal.node_id = meter.node_id;
  decoded.signal.reason = reason;
  std::vector<GroupMeter> changed;
  store_.Commit({decoded.signal.event_id}, {meter.group_id},
                [&](const std::vector<bool>& fresh, std::map<std::string, GroupMeter>& meters) {
                  BatchChanges changes;
                  AddUnsavedEvidence(meters);
                  auto it = meters.find(meter.group_id);
                  if (!fresh[0] || it == meters.end()) return changes;
                  for (auto& interval : meter_.Apply(it->second, decoded.signal, clock_())) {
                    Book(std::move(interval), changes);
                  }
                  changes.meters.push_back(it->second);
                  changed = changes.meters;
                  return changes;
                });
  for (const auto& m : changed) Remember(m);
}

int BillingService::Tick(bool caught_up) {
  const Millis now = clock_();
  if (!unsaved_seen_.empty()) {
    store_.SaveLastSeen({unsaved_seen_.begin(), unsaved_seen_.end()});
    unsaved_seen_.clear();
  }
  if (!caught_up) return 0;  // a stop may still be on its way through the stream
  std::vector<std::pair<GroupMeter, std::string>> lost;
  for (const auto& [group_id, meter] : open_) {
    auto node = nodes_.find(meter.node_id);
    const Millis heard_at = node == nodes_.end() ? started_at_ : node->second.heard_at;
    if (now - heard_at > options_.node_lost_after) {
      lost.emplace_back(meter, "NodeLost");
      continue;
    }
    if (node == nodes_.end()) continue;
    if (node->second.placed.count({group_id, meter.placement_generation}) > 0) {
      missing_since_.erase(group_id);
      continue;
    }
    if (node->second.sent_at < *meter.open_since + options_.heartbeat_grace) continue;  // older than the start
    auto [missing, inserted] = missing_since_.emplace(group_id, now);
    if (now - missing->second >= options_.missing_for) lost.emplace_back(meter, "CopyGone");
  }
  for (const auto& [meter, reason] : lost) CloseLost(meter, reason);
  return static_cast<int>(lost.size());
}

v1::CostReply BillingService::Costs(const v1::CostRequest& request) {
  v1::CostReply reply;
  reply.set_currency(prices_.currency());
  const Millis now = clock_();
  const Millis to = request.has_to() ? MillisOf(request.to()) : now;
  const Millis from = request.has_from() ? MillisOf(request.from()) : to - 30LL * 24 * 3600 * 1000;
  const std::string group_by = request.group_by().empty() ? "group" : request.group_by();
  if (request.subscription_id().empty()) {
    reply.set_error_code("InvalidSubscriptionId");
    reply.set_error_message("A subscription id is required.");
    return reply;
  }
  if (to <= from) {
    reply.set_error_code("InvalidTimeRange");
    reply.set_error_message("The end of the time range must be after its start.");
    return reply;
  }
  if (group_by != "group" && group_by != "resourceGroup" && group_by != "subscription" && group_by != "interval") {
    reply.set_error_code("InvalidGroupBy");
    reply.set_error_message("groupBy '" + group_by + "' is not one of: group, resourceGroup, subscription, interval.");
    return reply;
  }
  CostScope scope{request.subscription_id(), request.resource_group(), request.group_name()};
  struct Piece {
    Interval interval;
    bool open = false;
  };
  std::vector<Piece> pieces;
  for (auto& interval : store_.ClosedIntervals(scope, from, to)) pieces.push_back({std::move(interval), false});
  for (const auto& [group_id, meter] : open_) {
    if (!InScope(scope, meter) || *meter.open_since >= to) continue;
    pieces.push_back({OpenInterval(meter, now), true});
  }
  std::map<std::tuple<std::string, std::string, std::string>, size_t> line_of;
  double total = 0;
  for (const auto& piece : pieces) {
    const Interval& interval = piece.interval;
    const Millis begin = std::max(from, interval.start);
    const Millis end = std::min(to, interval.end);
    if (end <= begin && !(piece.open && begin == end)) continue;
    const Charge charge = prices_.ChargeFor(interval.resources, begin, end);
    total += charge.cost;
    v1::CostLine* line = nullptr;
    if (group_by == "interval") {
      line = reply.add_lines();
      line->set_priority(interval.resources.spot ? "Spot" : "Regular");
      *line->mutable_started_at() = TimestampOf(begin);
      *line->mutable_ended_at() = TimestampOf(end);
      line->set_start_event_id(interval.start_event_id);
      line->set_end_event_id(interval.end_event_id);
      line->set_open(piece.open);
    } else {
      std::tuple<std::string, std::string, std::string> key{
          interval.subscription_id, group_by == "subscription" ? "" : interval.resource_group,
          group_by == "group" ? interval.group_id : ""};
      auto [it, inserted] = line_of.emplace(key, static_cast<size_t>(reply.lines_size()));
      line = inserted ? reply.add_lines() : reply.mutable_lines(static_cast<int>(it->second));
    }
    line->set_subscription_id(interval.subscription_id);
    if (group_by != "subscription") line->set_resource_group(interval.resource_group);
    if (group_by == "group" || group_by == "interval") {
      line->set_group_name(interval.name);
      line->set_group_id(interval.group_id);
    }
    line->set_seconds(line->seconds() + charge.seconds);
    line->set_vcpu_seconds(line->vcpu_seconds() + charge.vcpu_seconds);
    line->set_gb_seconds(line->gb_seconds() + charge.gb_seconds);
    line->set_gpu_seconds(line->gpu_seconds() + charge.gpu_seconds);
    line->set_cost(line->cost() + charge.cost);
  }
  reply.set_total_cost(total);
  reply.set_ok(true);
  return reply;
}

v1::LiveCost BillingService::Live() {
  const Millis now = clock_();
  v1::LiveCost live;
  *live.mutable_at() = TimestampOf(now);
  std::map<std::string, v1::SubscriptionCost> by_subscription;
  for (const auto& [subscription, cost] : store_.ClosedCostBySubscription()) {
    by_subscription[subscription].set_cost_so_far(cost);
  }
  for (const auto& [group_id, meter] : open_) {
    auto& line = by_subscription[meter.subscription_id];
    line.set_running_groups(line.running_groups() + 1);
    line.set_cost_so_far(line.cost_so_far() + prices_.ChargeFor(meter.resources, *meter.open_since, now).cost);
    line.set_cost_per_hour(line.cost_per_hour() + prices_.ChargeFor(meter.resources, now, now + 3'600'000).cost);
  }
  for (auto& [subscription, line] : by_subscription) {
    line.set_subscription_id(subscription);
    line.set_currency(prices_.currency());
    *live.add_subscriptions() = std::move(line);
  }
  return live;
}

}  // namespace skiff::billing
