#include "skiff/billing/pg_billing_store.h"

#include <map>
#include <set>
#include <tuple>

#include <pqxx/pqxx>

#include "skiff/log/log.h"
#include "skiff/store/arrays.h"
#include "skiff/store/outbox.h"
#include "skiff/store/pool.h"

namespace skiff::billing {

namespace {

constexpr const char* kMeterColumns =
    "group_id, subscription_id, resource_group, name, vcpu, memory_gb, gpu, spot, placement_generation, node_id, "
    "open_since_ms, open_event_id, last_seen_ms, last_change_ms, unmatched_stop_ms, unmatched_stop_event_id, "
    "unmatched_stop_reason, billed_until_ms, deleted";

GroupMeter RowToMeter(const pqxx::row& row) {
  GroupMeter meter;
  meter.group_id = row[0].as<std::string>();
  meter.subscription_id = row[1].as<std::string>();
  meter.resource_group = row[2].as<std::string>();
  meter.name = row[3].as<std::string>();
  meter.resources = {row[4].as<double>(), row[5].as<double>(), row[6].as<int>(), row[7].as<bool>()};
  meter.placement_generation = row[8].as<int64_t>();
  meter.node_id = row[9].as<std::string>();
  if (!row[10].is_null()) meter.open_since = row[10].as<int64_t>();
  meter.open_event_id = row[11].as<std::string>();
  meter.last_seen = row[12].as<int64_t>();
  meter.last_change = row[13].as<int64_t>();
  if (!row[14].is_null()) meter.unmatched_stop = row[14].as<int64_t>();
  meter.unmatched_stop_event_id = row[15].as<std::string>();
  meter.unmatched_stop_reason = row[16].as<std::string>();
  meter.billed_until = row[17].as<int64_t>();
  meter.deleted = row[18].as<bool>();
  return meter;
}

constexpr const char* kIntervalColumns =
    "group_id, subscription_id, resource_group, name, node_id, vcpu, memory_gb, gpu, spot, start_ms, end_ms, "
    "start_event_id, end_event_id, end_reason";

// The kIntervalColumns of `row`, from column `first` on.
Interval RowToInterval(const pqxx::row& row, int first) {
  auto at = [&](int k) { return row[first + k]; };
  Interval i;
  i.group_id = at(0).as<std::string>();
  i.subscription_id = at(1).as<std::string>();
  i.resource_group = at(2).as<std::string>();
  i.name = at(3).as<std::string>();
  i.node_id = at(4).as<std::string>();
  i.resources = {at(5).as<double>(), at(6).as<double>(), at(7).as<int>(), at(8).as<bool>()};
  i.start = at(9).as<int64_t>();
  i.end = at(10).as<int64_t>();
  i.start_event_id = at(11).as<std::string>();
  i.end_event_id = at(12).as<std::string>();
  i.end_reason = at(13).as<std::string>();
  return i;
}

std::optional<std::string> OptionalMillis(const std::optional<Millis>& value) {
  if (!value) return std::nullopt;
  return std::to_string(*value);
}

void UpsertMeters(pqxx::work& tx, const std::vector<GroupMeter>& meters) {
  if (meters.empty()) return;
  std::vector<std::string> ids, subscriptions, resource_groups, names, nodes, open_events, stop_events, stop_reasons;
  std::vector<double> vcpu, memory;
  std::vector<int> gpu, spot, deleted;
  std::vector<int64_t> generations, last_seen, last_change, billed_until;
  std::vector<std::optional<std::string>> open_since, unmatched_stop;
  for (const auto& m : meters) {
    ids.push_back(m.group_id);
    subscriptions.push_back(m.subscription_id);
    resource_groups.push_back(m.resource_group);
    names.push_back(m.name);
    vcpu.push_back(m.resources.vcpu);
    memory.push_back(m.resources.memory_gb);
    gpu.push_back(m.resources.gpu);
    spot.push_back(m.resources.spot ? 1 : 0);
    generations.push_back(m.placement_generation);
    nodes.push_back(m.node_id);
    open_since.push_back(OptionalMillis(m.open_since));
    open_events.push_back(m.open_event_id);
    last_seen.push_back(m.last_seen);
    last_change.push_back(m.last_change);
    unmatched_stop.push_back(OptionalMillis(m.unmatched_stop));
    stop_events.push_back(m.unmatched_stop_event_id);
    stop_reasons.push_back(m.unmatched_stop_reason);
    billed_until.push_back(m.billed_until);
    deleted.push_back(m.deleted ? 1 : 0);
  }
  using store::ArrayLiteral;
  using store::NumberArrayLiteral;
  tx.exec_params(std::string("INSERT INTO billing.meters (") + kMeterColumns +
                     ") SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], "
                     "$6::float8[], $7::int[], $8::boolean[], $9::bigint[], $10::text[], $11::bigint[], $12::text[], "
                     "$13::bigint[], $14::bigint[], $15::bigint[], $16::text[], $17::text[], $18::bigint[], "
                     "$19::boolean[]) "
                     "ON CONFLICT (group_id) DO UPDATE SET subscription_id = EXCLUDED.subscription_id, "
                     "resource_group = EXCLUDED.resource_group, name = EXCLUDED.name, vcpu = EXCLUDED.vcpu, "
                     "memory_gb = EXCLUDED.memory_gb, gpu = EXCLUDED.gpu, spot = EXCLUDED.spot, "
                     "placement_generation = EXCLUDED.placement_generation, node_id = EXCLUDED.node_id, "
                     "open_since_ms = EXCLUDED.open_since_ms, open_event_id = EXCLUDED.open_event_id, "
                     "last_seen_ms = EXCLUDED.last_seen_ms, last_change_ms = EXCLUDED.last_change_ms, "
                     "unmatched_stop_ms = EXCLUDED.unmatched_stop_ms, "
                     "unmatched_stop_event_id = EXCLUDED.unmatched_stop_event_id, "
                     "unmatched_stop_reason = EXCLUDED.unmatched_stop_reason, "
                     "billed_until_ms = EXCLUDED.billed_until_ms, deleted = EXCLUDED.deleted",
                 ArrayLiteral(ids), ArrayLiteral(subscriptions), ArrayLiteral(resource_groups), ArrayLiteral(names),
                 NumberArrayLiteral(vcpu), NumberArrayLiteral(memory), NumberArrayLiteral(gpu),
                 NumberArrayLiteral(spot), NumberArrayLiteral(generations), ArrayLiteral(nodes),
                 ArrayLiteral(open_since), ArrayLiteral(open_events), NumberArrayLiteral(last_seen),
                 NumberArrayLiteral(last_change), ArrayLiteral(unmatched_stop), ArrayLiteral(stop_events),
                 ArrayLiteral(stop_reasons), NumberArrayLiteral(billed_until), NumberArrayLiteral(deleted));
}

// Returns the largest id it gave (0: none).
int64_t InsertIntervals(pqxx::work& tx, const std::vector<BilledInterval>& billed) {
  if (billed.empty()) return 0;
  std::vector<std::string> ids, subscriptions, resource_groups, names, nodes, start_events, end_events, reasons;
  std::vector<double> vcpu, memory, seconds, vcpu_seconds, gb_seconds, gpu_seconds, cost;
  std::vector<int> gpu, spot;
  std::vector<int64_t> starts, ends;
  for (const auto& [i, charge] : billed) {
    ids.push_back(i.group_id);
    subscriptions.push_back(i.subscription_id);
    resource_groups.push_back(i.resource_group);
    names.push_back(i.name);
    nodes.push_back(i.node_id);
    vcpu.push_back(i.resources.vcpu);
    memory.push_back(i.resources.memory_gb);
    gpu.push_back(i.resources.gpu);
    spot.push_back(i.resources.spot ? 1 : 0);
    starts.push_back(i.start);
    ends.push_back(i.end);
    start_events.push_back(i.start_event_id);
    end_events.push_back(i.end_event_id);
    reasons.push_back(i.end_reason);
    seconds.push_back(charge.seconds);
    vcpu_seconds.push_back(charge.vcpu_seconds);
    gb_seconds.push_back(charge.gb_seconds);
    gpu_seconds.push_back(charge.gpu_seconds);
    cost.push_back(charge.cost);
  }
  using store::ArrayLiteral;
  using store::NumberArrayLiteral;
  return tx.exec_params1(
      std::string("WITH inserted AS (INSERT INTO billing.intervals (") + kIntervalColumns +
          ", seconds, vcpu_seconds, gb_seconds, gpu_seconds, cost) "
      "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[], "
      "$8::int[], $9::boolean[], $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::text[], "
      "$15::float8[], $16::float8[], $17::float8[], $18::float8[], $19::float8[]) RETURNING id) "
      "SELECT max(id) FROM inserted",
      ArrayLiteral(ids), ArrayLiteral(subscriptions), ArrayLiteral(resource_groups), ArrayLiteral(names),
      ArrayLiteral(nodes), NumberArrayLiteral(vcpu), NumberArrayLiteral(memory), NumberArrayLiteral(gpu),
      NumberArrayLiteral(spot), NumberArrayLiteral(starts), NumberArrayLiteral(ends), ArrayLiteral(start_events),
      ArrayLiteral(end_events), ArrayLiteral(reasons), NumberArrayLiteral(seconds), NumberArrayLiteral(vcpu_seconds),
      NumberArrayLiteral(gb_seconds), NumberArrayLiteral(gpu_seconds), NumberArrayLiteral(cost))[0]
      .as<int64_t>();
}

void AddHourly(pqxx::work& tx, const std::vector<HourlyUsage>& rows) {
  if (rows.empty()) return;
  // One row per key first: an upsert may not touch the same row twice in one statement.
  std::map<std::tuple<std::string, Millis, bool>, HourlyUsage> merged;
  for (const auto& row : rows) {
    auto [it, inserted] = merged.emplace(std::make_tuple(row.group_id, row.hour, row.spot), row);
    if (!inserted) it->second.charge += row.charge;
  }
  std::vector<std::string> ids, subscriptions, resource_groups, names;
  std::vector<int64_t> hours;
  std::vector<int> spot;
  std::vector<double> seconds, vcpu_seconds, gb_seconds, gpu_seconds, cost;
  for (const auto& [key, r] : merged) {
    ids.push_back(r.group_id);
    hours.push_back(r.hour);
    spot.push_back(r.spot ? 1 : 0);
    subscriptions.push_back(r.subscription_id);
    resource_groups.push_back(r.resource_group);
    names.push_back(r.name);
    seconds.push_back(r.charge.seconds);
    vcpu_seconds.push_back(r.charge.vcpu_seconds);
    gb_seconds.push_back(r.charge.gb_seconds);
    gpu_seconds.push_back(r.charge.gpu_seconds);
    cost.push_back(r.charge.cost);
  }
  using store::ArrayLiteral;
  using store::NumberArrayLiteral;
  tx.exec_params(
      "INSERT INTO billing.usage_hourly (group_id, hour_ms, spot, subscription_id, resource_group, name, seconds, "
      "vcpu_seconds, gb_seconds, gpu_seconds, cost) "
      "SELECT * FROM unnest($1::text[], $2::bigint[], $3::boolean[], $4::text[], $5::text[], $6::text[], "
      "$7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[]) "
      "ON CONFLICT (group_id, hour_ms, spot) DO UPDATE SET seconds = usage_hourly.seconds + EXCLUDED.seconds, "
      "vcpu_seconds = usage_hourly.vcpu_seconds + EXCLUDED.vcpu_seconds, "
      "gb_seconds = usage_hourly.gb_seconds + EXCLUDED.gb_seconds, "
      "gpu_seconds = usage_hourly.gpu_seconds + EXCLUDED.gpu_seconds, cost = usage_hourly.cost + EXCLUDED.cost",
      ArrayLiteral(ids), NumberArrayLiteral(hours), NumberArrayLiteral(spot), ArrayLiteral(subscriptions),
      ArrayLiteral(resource_groups), ArrayLiteral(names), NumberArrayLiteral(seconds), NumberArrayLiteral(vcpu_seconds),
      NumberArrayLiteral(gb_seconds), NumberArrayLiteral(gpu_seconds), NumberArrayLiteral(cost));
}

// The UUIDs' 16 bytes each, back to back (a checkpoint's ids as one binary value).
std::string PackUuids(const std::vector<std::string>& uuids) {
  std::string packed;
  packed.reserve(uuids.size() * 16);
  for (const auto& uuid : uuids) {
    std::string hex;
    for (char c : uuid) {
      if (c != '-') hex += c;
    }
    packed += store::HexDecode(hex);
  }
  return packed;
}

// The hex of PackUuids' bytes, back to UUIDs in their usual form.
void UnpackUuids(const std::string& hex, std::vector<std::string>& out) {
  for (size_t at = 0; at + 32 <= hex.size(); at += 32) {
    out.push_back(hex.substr(at, 8) + "-" + hex.substr(at + 8, 4) + "-" + hex.substr(at + 12, 4) + "-" +
                  hex.substr(at + 16, 4) + "-" + hex.substr(at + 20, 12));
  }
}

}  // namespace

std::vector<store::Migration> BillingMigrations() {
  return {
      {1, "meters, processed events, intervals, hourly rollup, outbox",
       R"sql(
        CREATE TABLE processed_events (
          event_id     text PRIMARY KEY,
          processed_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX processed_events_age ON processed_events (processed_at);
        CREATE TABLE meters (
          group_id                text PRIMARY KEY,
          subscription_id         text NOT NULL,
          resource_group          text NOT NULL,
          name                    text NOT NULL,
          vcpu                    double precision NOT NULL,
          memory_gb               double precision NOT NULL,
          gpu                     integer NOT NULL,
          spot                    boolean NOT NULL,
          placement_generation    bigint NOT NULL,
          node_id                 text NOT NULL,
          open_since_ms           bigint,
          open_event_id           text NOT NULL,
          last_seen_ms            bigint NOT NULL,
          last_change_ms          bigint NOT NULL,
          unmatched_stop_ms       bigint,
          unmatched_stop_event_id text NOT NULL,
          unmatched_stop_reason   text NOT NULL,
          billed_until_ms         bigint NOT NULL,
          deleted                 boolean NOT NULL
        );
        CREATE INDEX meters_open ON meters (group_id) WHERE open_since_ms IS NOT NULL;
        CREATE TABLE intervals (
          id              bigserial PRIMARY KEY,
          group_id        text NOT NULL,
          subscription_id text NOT NULL,
          resource_group  text NOT NULL,
          name            text NOT NULL,
          node_id         text NOT NULL,
          vcpu            double precision NOT NULL,
          memory_gb       double precision NOT NULL,
          gpu             integer NOT NULL,
          spot            boolean NOT NULL,
          start_ms        bigint NOT NULL,
          end_ms          bigint NOT NULL,
          start_event_id  text NOT NULL,
          end_event_id    text NOT NULL,
          end_reason      text NOT NULL
        );
        CREATE INDEX intervals_by_subscription ON intervals (subscription_id, end_ms);
        CREATE TABLE usage_hourly (
          group_id        text NOT NULL,
          hour_ms         bigint NOT NULL,
          spot            boolean NOT NULL,
          subscription_id text NOT NULL,
          resource_group  text NOT NULL,
          name            text NOT NULL,
          seconds         double precision NOT NULL,
          vcpu_seconds    double precision NOT NULL,
          gb_seconds      double precision NOT NULL,
          gpu_seconds     double precision NOT NULL,
          cost            double precision NOT NULL,
          PRIMARY KEY (group_id, hour_ms, spot)
        );
        CREATE INDEX usage_hourly_by_subscription ON usage_hourly (subscription_id, hour_ms);
      )sql" + store::OutboxTableSql()},
      // Every batch rewrites its groups' meters: leave room on each page so the rewrite stays on
      // the page (a HOT update, no index entries), which an index on open_since_ms would forbid.
      {2, "meters updated in place",
       R"sql(
        DROP INDEX meters_open;
        ALTER TABLE meters SET (fillfactor = 70);
      )sql"},
      // Event ids are UUIDs (16 bytes, not 36 characters of text); pruning scans hourly rather
      // than every insert maintaining a second index.
      {3, "processed event ids as uuid",
       R"sql(
        DROP INDEX processed_events_age;
        ALTER TABLE processed_events ALTER COLUMN event_id TYPE uuid USING event_id::uuid;
      )sql"},
      // Checkpoints: billing meters in memory and writes each checkpoint's event ids as one row;
      // the usage records are published from the intervals themselves (priced when they closed)
      // instead of a second copy in the outbox.
      {4, "processed ids per checkpoint, priced intervals, usage relay",
       R"sql(
        CREATE TABLE processed_batches (
          id           bigserial PRIMARY KEY,
          processed_at timestamptz NOT NULL DEFAULT now(),
          event_ids    bytea NOT NULL   -- the ids' 16 bytes each, one after another
        );
        ALTER TABLE processed_batches ALTER COLUMN event_ids SET STORAGE EXTERNAL;  -- random: no compression
        INSERT INTO processed_batches (processed_at, event_ids)
          SELECT max(processed_at), string_agg(uuid_send(event_id), ''::bytea) FROM processed_events
          HAVING count(*) > 0;
        DROP TABLE processed_events;
        ALTER TABLE intervals ADD COLUMN seconds double precision NOT NULL DEFAULT 0,
          ADD COLUMN vcpu_seconds double precision NOT NULL DEFAULT 0,
          ADD COLUMN gb_seconds double precision NOT NULL DEFAULT 0,
          ADD COLUMN gpu_seconds double precision NOT NULL DEFAULT 0,
          ADD COLUMN cost double precision NOT NULL DEFAULT 0;
        -- Records of the intervals closed before this went through the outbox.
        CREATE TABLE usage_relay (published_through bigint NOT NULL);
        INSERT INTO usage_relay SELECT coalesce(max(id), 0) FROM intervals;
      )sql"},
  };
}

PgBillingStore::PgBillingStore(store::ConnectionPool& pool, std::function<void()> intervals_written)
    : pool_(pool), intervals_written_(std::move(intervals_written)) {
  safe_through_ = store::ReadOnly(pool_, [](pqxx::nontransaction& tx) {
    return tx.exec("SELECT coalesce(max(id), 0) FROM billing.intervals")[0][0].as<int64_t>();
  });
}

void PgBillingStore::Commit(const Checkpoint& checkpoint) {
  {
    std::lock_guard lock(mutex_);
    ++in_flight_;
  }
  int64_t max_id = 0;
  try {
    store::InTransaction(pool_, [&](pqxx::work& tx) {
      // The ids are the consumer's position: whatever this checkpoint changes commits with them.
      if (!checkpoint.event_ids.empty()) {
        const std::string packed = PackUuids(checkpoint.event_ids);
        tx.exec_params("INSERT INTO billing.processed_batches (event_ids) VALUES ($1)",
                       pqxx::binarystring(packed.data(), packed.size()));
      }
      UpsertMeters(tx, checkpoint.meters);
      max_id = InsertIntervals(tx, checkpoint.closed);
      AddHourly(tx, checkpoint.hourly);
    });
  } catch (...) {
    Finished(0);
    throw;
  }
  Finished(max_id);
  if (max_id > 0 && intervals_written_) intervals_written_();
}

void PgBillingStore::Finished(int64_t max_id) {
  std::lock_guard lock(mutex_);
  largest_given_ = std::max(largest_given_, max_id);
  // With nothing in flight, every id given so far belongs to a finished transaction: a relay
  // reading up to here cannot pass over a row that commits later.
  if (--in_flight_ == 0) safe_through_ = std::max(safe_through_, largest_given_);
}

std::vector<GroupMeter> PgBillingStore::LoadMeters() {
  return store::ReadOnly(pool_, [](pqxx::nontransaction& tx) {
    std::vector<GroupMeter> meters;
    for (const auto& row : tx.exec(std::string("SELECT ") + kMeterColumns + " FROM billing.meters")) {
      meters.push_back(RowToMeter(row));
    }
    return meters;
  });
}

std::vector<std::string> PgBillingStore::ProcessedSince(Millis since) {
  return store::ReadOnly(pool_, [&](pqxx::nontransaction& tx) {
    std::vector<std::string> ids;
    for (const auto& row : tx.exec_params("SELECT encode(event_ids, 'hex') FROM billing.processed_batches "
                                          "WHERE processed_at >= to_timestamp($1::float8 / 1000)",
                                          since)) {
      UnpackUuids(row[0].as<std::string>(), ids);
    }
    return ids;
  });
}

size_t PgBillingStore::PublishUsage(bus::EventPublisher& publisher, const std::string& currency, int limit) {
  int64_t safe;
  {
    std::lock_guard lock(mutex_);
    safe = safe_through_;
  }
  return store::InTransaction(pool_, [&](pqxx::work& tx) -> size_t {
    const auto mark = tx.exec("SELECT published_through FROM billing.usage_relay FOR UPDATE")[0][0].as<int64_t>();
    if (mark >= safe) return 0;
    auto rows = tx.exec_params(std::string("SELECT id, ") + kIntervalColumns +
                                   ", seconds, vcpu_seconds, gb_seconds, gpu_seconds, cost FROM billing.intervals "
                                   "WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
                               mark, safe, limit);
    std::vector<bus::OutgoingMessage> messages;
    std::vector<int64_t> ids;
    messages.reserve(rows.size());
    for (const auto& row : rows) {
      const Interval i = RowToInterval(row, 1);
      Charge charge;
      charge.seconds = row[15].as<double>();
      charge.vcpu_seconds = row[16].as<double>();
      charge.gb_seconds = row[17].as<double>();
      charge.gpu_seconds = row[18].as<double>();
      charge.cost = row[19].as<double>();
      const v1::UsageRecord record = UsageRecordOf(i, charge, currency);
      // The record id is the Nats-Msg-Id: publishing again after a crash lands once.
      messages.push_back({"skiff.usage.interval", record.record_id(), record.SerializeAsString()});
      ids.push_back(row[0].as<int64_t>());
    }
    std::string error;
    const size_t published = publisher.PublishAll(messages, &error);
    if (published < messages.size()) spdlog::warn("usage relay: publish failed, will retry: {}", error);
    const int64_t published_through = published > 0 ? ids[published - 1] : mark;
    if (published_through > mark) {
      tx.exec_params("UPDATE billing.usage_relay SET published_through = $1", published_through);
    }
    return published;
  });
}

std::vector<Interval> PgBillingStore::ClosedIntervals(const CostScope& scope, Millis from, Millis to) {
  return store::ReadOnly(pool_, [&](pqxx::nontransaction& tx) {
    std::vector<Interval> intervals;
    auto rows = tx.exec_params(
        std::string("SELECT ") + kIntervalColumns +
            " FROM billing.intervals WHERE subscription_id = $1 AND end_ms > $2 AND start_ms < $3 "
            "AND ($4 = '' OR lower(resource_group) = lower($4)) AND ($5 = '' OR lower(name) = lower($5)) "
            "ORDER BY start_ms, id",
        scope.subscription_id, from, to, scope.resource_group, scope.group_name);
    for (const auto& row : rows) intervals.push_back(RowToInterval(row, 0));
    return intervals;
  });
}

std::map<std::string, double> PgBillingStore::ClosedCostBySubscription() {
  return store::ReadOnly(pool_, [](pqxx::nontransaction& tx) {
    std::map<std::string, double> costs;
    for (const auto& row : tx.exec("SELECT subscription_id, sum(cost) FROM billing.usage_hourly GROUP BY 1")) {
      costs[row[0].as<std::string>()] = row[1].as<double>();
    }
    return costs;
  });
}

long PgBillingStore::PruneProcessed(Millis age) {
  return store::InTransaction(pool_, [&](pqxx::work& tx) {
    return static_cast<long>(tx.exec_params("DELETE FROM billing.processed_batches "
                                            "WHERE processed_at < now() - make_interval(secs => $1::float8 / 1000)",
                                            age)
                                 .affected_rows());
  });
}

UsageRelay::UsageRelay(PgBillingStore& store, bus::EventPublisher& publisher, std::string currency)
    : RelayLoop("usage relay", 2000, std::chrono::milliseconds(200)),
      store_(store),
      publisher_(publisher),
      currency_(std::move(currency)) {}

UsageRelay::~UsageRelay() { Stop(); }

size_t UsageRelay::RunOnce() { return store_.PublishUsage(publisher_, currency_, 2000); }

}  // namespace skiff::billing
