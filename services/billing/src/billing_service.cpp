#include "skiff/billing/billing_service.h"

#include <algorithm>
#include <strings.h>

#include <thread>

#include "skiff/bus/subjects.h"
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

// `Of` is a GroupMeter or an Interval: both name their group the same way.
template <typename Of>
bool InScope(const CostScope& scope, const Of& of) {
  return of.subscription_id == scope.subscription_id &&
         (scope.resource_group.empty() || SameName(scope.resource_group, of.resource_group)) &&
         (scope.group_name.empty() || SameName(scope.group_name, of.name));
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
    // Only the node named in the subject could publish it: one that claims another is dropped.
    auto parsed = subjects::ParseNodeEvent(subject);
    if (!parsed || !subjects::PublishedBy(subject, event.node_id())) return std::nullopt;
    const std::string& kind = parsed->kind;
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

v1::UsageRecord UsageRecordOf(const Interval& interval, const Charge& charge, const std::string& currency) {
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
  record.set_currency(currency);
  record.set_start_event_id(interval.start_event_id);
  record.set_end_event_id(interval.end_event_id);
  record.set_end_reason(interval.end_reason);
  record.set_node_id(interval.node_id);
  return record;
}

BillingService::BillingService(BillingStore& store, PriceSheet prices, Meter meter, BillingOptions options, Clock clock)
    : store_(store), prices_(std::move(prices)), meter_(meter), options_(options), clock_(std::move(clock)) {}

BillingService::EventKey BillingService::KeyOf(const std::string& uuid) {
  EventKey key;
  int digits = 0;
  for (char c : uuid) {
    int value;
    if (c >= '0' && c <= '9') value = c - '0';
    else if (c >= 'a' && c <= 'f') value = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') value = c - 'A' + 10;
    else continue;  // the dashes
    uint64_t& half = digits < 16 ? key.high : key.low;
    half = (half << 4) | static_cast<uint64_t>(value);
    ++digits;
  }
  return key;
}

void BillingService::Start() {
  started_at_ = clock_();
  meters_.clear();
  open_.clear();
  for (auto& meter : store_.LoadMeters()) {
    TrackOpen(meter);
    std::string id = meter.group_id;
    meters_.emplace(std::move(id), std::move(meter));
  }
  processed_.clear();
  processed_order_.clear();
  Remember(store_.ProcessedSince(started_at_ - options_.dedupe_window), started_at_);
}

void BillingService::Remember(const std::vector<std::string>& event_ids, Millis at) {
  std::vector<EventKey> keys;
  keys.reserve(event_ids.size());
  for (const auto& id : event_ids) {
    keys.push_back(KeyOf(id));
    processed_.insert(keys.back());
  }
  processed_order_.emplace_back(at, std::move(keys));
}

void BillingService::Forget(Millis now) {
  while (!processed_order_.empty() && processed_order_.front().first < now - options_.dedupe_window) {
    for (const auto& key : processed_order_.front().second) processed_.erase(key);
    processed_order_.pop_front();
  }
}

void BillingService::TrackOpen(const GroupMeter& meter) {
  if (meter.open_since) {
    open_.insert(meter.group_id);
  } else {
    open_.erase(meter.group_id);
    missing_since_.erase(meter.group_id);
  }
}

GroupMeter& BillingService::Touch(const std::string& group_id) {
  auto it = meters_.find(group_id);
  if (!before_.count(group_id)) {
    before_.emplace(group_id, it == meters_.end() ? std::nullopt : std::optional<GroupMeter>(it->second));
  }
  if (it == meters_.end()) {
    it = meters_.emplace(group_id, GroupMeter{}).first;
    it->second.group_id = group_id;
  }
  return it->second;
}

void BillingService::Book(Interval interval) {
  const Charge charge = prices_.ChargeFor(interval.resources, interval.start, interval.end);
  for (auto& row : Rollup(interval, prices_)) staged_hourly_.push_back(std::move(row));
  staged_closed_.push_back({std::move(interval), charge});
}

int BillingService::ApplySignal(const DecodedSignal& decoded, Millis now) {
  GroupMeter& meter = Touch(decoded.group_id);
  int closed = 0;
  for (auto& interval : meter_.Apply(meter, decoded.signal, now)) {
    Book(std::move(interval));
    ++closed;
  }
  dirty_.insert(decoded.group_id);
  TrackOpen(meter);
  return closed;
}

BatchStats BillingService::Apply(const std::vector<InboundEvent>& events) {
  BatchStats stats;
  stats.events = static_cast<int>(events.size());
  const Millis now = clock_();
  for (const auto& event : events) {
    auto decoded = DecodeEvent(event.subject, event.data);
    if (!decoded) continue;
    const EventKey key = KeyOf(decoded->signal.event_id);
    if (processed_.count(key) > 0 || !staged_keys_.insert(key).second) {
      ++stats.duplicates;  // a redelivery, a second publish, or a repeat inside the batch
      continue;
    }
    staged_ids_.emplace_back(decoded->group_id, decoded->signal.event_id);
    ++stats.applied;
    stats.closed += ApplySignal(*decoded, now);
  }
  return stats;
}

int BillingService::Commit() {
  if (staged_ids_.empty() && dirty_.empty() && staged_closed_.empty()) return 0;
  const size_t shard_count = static_cast<size_t>(std::max(1, options_.commit_shards));
  auto shard_of = [shard_count](const std::string& group_id) { return std::hash<std::string>{}(group_id) % shard_count; };
  std::vector<Checkpoint> checkpoints(shard_count);
  for (const auto& [group_id, event_id] : staged_ids_) checkpoints[shard_of(group_id)].event_ids.push_back(event_id);
  for (const auto& group_id : dirty_) checkpoints[shard_of(group_id)].meters.push_back(meters_.at(group_id));
  for (auto& closed : staged_closed_) checkpoints[shard_of(closed.interval.group_id)].closed.push_back(std::move(closed));
  for (auto& row : staged_hourly_) checkpoints[shard_of(row.group_id)].hourly.push_back(std::move(row));

  std::vector<std::exception_ptr> errors(shard_count);
  auto run = [&](size_t s) {
    try {
      store_.Commit(checkpoints[s]);
    } catch (...) {
      errors[s] = std::current_exception();
    }
  };
  std::vector<std::thread> helpers;
  std::vector<size_t> busy;
  for (size_t s = 0; s < shard_count; ++s) {
    const Checkpoint& c = checkpoints[s];
    if (!c.event_ids.empty() || !c.meters.empty() || !c.closed.empty()) busy.push_back(s);
  }
  for (size_t k = 1; k < busy.size(); ++k) helpers.emplace_back(run, busy[k]);
  if (!busy.empty()) run(busy[0]);
  for (auto& helper : helpers) helper.join();

  // A shard that committed is kept even if another failed: its events are processed and come
  // again only as duplicates. A failed shard's groups go back to what was last committed.
  const Millis now = clock_();
  int committed = 0;
  std::exception_ptr first_error;
  std::set<std::string> still_dirty;
  for (size_t s = 0; s < shard_count; ++s) {
    if (!errors[s]) {
      Remember(checkpoints[s].event_ids, now);
      committed += static_cast<int>(checkpoints[s].closed.size());
      continue;
    }
    if (!first_error) first_error = errors[s];
    for (const auto& meter : checkpoints[s].meters) {
      auto undo = before_.find(meter.group_id);
      if (undo == before_.end()) {
        still_dirty.insert(meter.group_id);  // only heartbeat evidence changed: write it next time
      } else if (undo->second) {
        meters_[meter.group_id] = *undo->second;
        TrackOpen(*undo->second);
      } else {
        meters_.erase(meter.group_id);
        open_.erase(meter.group_id);
        missing_since_.erase(meter.group_id);
      }
    }
  }
  staged_ids_.clear();
  staged_keys_.clear();
  before_.clear();
  dirty_ = std::move(still_dirty);
  staged_closed_.clear();
  staged_hourly_.clear();
  Forget(now);
  if (first_error) std::rethrow_exception(first_error);
  return committed;
}

BatchStats BillingService::HandleBatch(const std::vector<InboundEvent>& events) {
  BatchStats stats = Apply(events);
  Commit();
  return stats;
}

void BillingService::HandleHeartbeat(const node::v1::NodeHeartbeat& heartbeat) {
  NodeSeen& node = nodes_[heartbeat.node_id()];
  node.heard_at = clock_();
  node.sent_at = MillisOf(heartbeat.sent_at());
  node.placed.clear();
  for (const auto& placed : heartbeat.placed()) {
    node.placed.emplace(placed.group_id(), placed.placement_generation());
    if (!open_.count(placed.group_id())) continue;
    GroupMeter& meter = meters_.at(placed.group_id());
    if (meter.node_id != heartbeat.node_id()) continue;
    const Millis before = meter.last_seen;
    Meter::Seen(meter, placed.placement_generation(), node.sent_at);
    if (meter.last_seen != before) dirty_.insert(meter.group_id);  // saved with the next checkpoint
  }
}

void BillingService::CloseLost(const std::string& group_id, const std::string& reason) {
  const GroupMeter& meter = meters_.at(group_id);
  DecodedSignal decoded;
  decoded.group_id = group_id;
  decoded.signal.kind = SignalKind::kLost;
  // Deterministic, so a retry after a crash cannot close the same interval twice.
  decoded.signal.event_id = crypto::NameUuid("reconcile:" + group_id + ":" + meter.open_event_id);
  decoded.signal.at = meter.last_seen;
  decoded.signal.placement_generation = meter.placement_generation;
  decoded.signal.node_id = meter.node_id;
  decoded.signal.reason = reason;
  const EventKey key = KeyOf(decoded.signal.event_id);
  if (processed_.count(key) > 0 || !staged_keys_.insert(key).second) return;
  staged_ids_.emplace_back(group_id, decoded.signal.event_id);
  ApplySignal(decoded, clock_());
}

int BillingService::Tick(bool caught_up) {
  const Millis now = clock_();
  std::vector<std::pair<std::string, std::string>> lost;
  if (caught_up) {  // else a stop may still be on its way through the stream
    for (const auto& group_id : open_) {
      const GroupMeter& meter = meters_.at(group_id);
      auto node = nodes_.find(meter.node_id);
      const Millis heard_at = node == nodes_.end() ? started_at_ : node->second.heard_at;
      if (now - heard_at > options_.node_lost_after) {
        lost.emplace_back(group_id, "NodeLost");
        continue;
      }
      if (node == nodes_.end()) continue;
      if (node->second.placed.count({group_id, meter.placement_generation}) > 0) {
        missing_since_.erase(group_id);
        continue;
      }
      if (node->second.sent_at < *meter.open_since + options_.heartbeat_grace) continue;  // older than the start
      auto [missing, inserted] = missing_since_.emplace(group_id, now);
      if (now - missing->second >= options_.missing_for) lost.emplace_back(group_id, "CopyGone");
    }
  }
  for (const auto& [group_id, reason] : lost) CloseLost(group_id, reason);
  Commit();  // the closes and the heartbeat evidence
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
  for (const auto& closed : staged_closed_) {  // closed, not yet committed
    const Interval& i = closed.interval;
    if (InScope(scope, i) && i.end > from && i.start < to) pieces.push_back({i, false});
  }
  for (const auto& group_id : open_) {
    const GroupMeter& meter = meters_.at(group_id);
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
  for (const auto& closed : staged_closed_) {
    auto& line = by_subscription[closed.interval.subscription_id];
    line.set_cost_so_far(line.cost_so_far() + closed.charge.cost);
  }
  for (const auto& group_id : open_) {
    const GroupMeter& meter = meters_.at(group_id);
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
