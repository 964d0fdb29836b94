#include "skiff/gateway/pg_group_store.h"

#include "skiff/gateway/group_codec.h"
#include "skiff/gateway/v1/runtime.pb.h"
#include "skiff/crypto/crypto.h"
#include "skiff/store/arrays.h"
#include "skiff/store/outbox.h"
#include "skiff/store/pool.h"

namespace skiff::gateway {
namespace {

constexpr const char* kColumns =
    "subscription_id, resource_group, name, group_id::text, generation, encode(spec_pb, 'hex'), r.version, "
    "r.placement_generation, r.provisioning_state, r.node_id, encode(r.view_pb, 'hex')";
// Groups with their runtime (the read model), if the services have reported any.
constexpr const char* kFrom = " FROM gateway.container_groups LEFT JOIN gateway.group_runtime r USING (group_id)";

// The runtime's columns from `offset` on: version, placement_generation, provisioning_state,
// node_id, hex of view_pb.
GroupRuntime ReadRuntime(const std::string& group_id, const pqxx::row& row, int offset) {
  GroupRuntime runtime;
  runtime.group_id = group_id;
  runtime.version = row[offset].as<int64_t>();
  runtime.placement_generation = row[offset + 1].as<int64_t>();
  runtime.provisioning_state = row[offset + 2].as<std::string>();
  runtime.node_id = row[offset + 3].as<std::string>();
  gateway::v1::GroupRuntimeRecord stored;
  if (stored.ParseFromString(store::HexDecode(row[offset + 4].as<std::string>()))) {
    runtime.group = stored.group();
    runtime.containers.insert(stored.containers().begin(), stored.containers().end());
    runtime.recent_event_ids.assign(stored.recent_event_ids().begin(), stored.recent_event_ids().end());
  }
  return runtime;
}

// Every libpqxx failure leaves the store as StoreUnavailable (503), nothing else.
template <typename Fn>
auto TranslateErrors(Fn&& fn) {
  try {
    return fn();
  } catch (const pqxx::broken_connection& e) {
    throw StoreUnavailable(std::string("postgres connection: ") + e.what());
  } catch (const pqxx::failure& e) {
    throw StoreUnavailable(std::string("postgres: ") + e.what());
  }
}

// A write: retried transaction.
template <typename Body>
auto Guarded(store::ConnectionPool& pool, Body&& body) {
  return TranslateErrors([&] { return store::InTransaction(pool, std::forward<Body>(body)); });
}

// A read: no BEGIN/COMMIT round trips.
template <typename Body>
auto GuardedRead(store::ConnectionPool& pool, Body&& body) {
  return TranslateErrors([&] { return store::ReadOnly(pool, std::forward<Body>(body)); });
}

// $1 subscription key, $2 now (epoch ms), $3 how many creates to count at most.
const store::Statement kUsage{"gateway.usage", R"sql(
  SELECT g.groups, g.cores, c.last_5_minutes, c.last_hour, c.oldest_in_5_minutes, c.oldest_in_hour
  FROM (SELECT count(*) AS groups, coalesce(sum(cores), 0) AS cores
        FROM gateway.container_groups WHERE subscription_key = $1) g,
       (SELECT count(*) FILTER (WHERE at > $2::bigint - 300000) AS last_5_minutes, count(*) AS last_hour,
               coalesce(min(at) FILTER (WHERE at > $2::bigint - 300000), 0) AS oldest_in_5_minutes,
               coalesce(min(at), 0) AS oldest_in_hour
        FROM (SELECT (extract(epoch FROM started_at) * 1000)::bigint AS at FROM gateway.operations
              WHERE subscription_key = $1 AND kind = 'create'
                AND started_at > to_timestamp($2::bigint / 1000.0) - interval '1 hour'
              ORDER BY started_at DESC LIMIT $3::bigint) recent) c)sql"};

// The group, its operation (when $11) and its event, or nothing when the key or id is taken.
const store::Statement kInsertGroup{"gateway.insert_group", R"sql(
  WITH g AS (
    INSERT INTO gateway.container_groups (subscription_key, resource_group_key, name_key, subscription_id,
      resource_group, name, group_id, generation, spec_pb, spec, cores)
    VALUES ($1, $2, $3, $4, $5, $6, $7::uuid, $8, decode($9, 'hex'), $10::jsonb, $23)
    ON CONFLICT DO NOTHING RETURNING 1),
  o AS (
    INSERT INTO gateway.operations (id, subscription_key, kind, resource_id, status, started_at, ended_at,
      error_code, error_message)
    SELECT $12::uuid, $1, $13, $14, $15, $16::timestamptz, NULLIF($17, '')::timestamptz, $18, $19
    FROM g WHERE $11::boolean),
  e AS (
    INSERT INTO gateway.outbox (event_id, subject, payload) SELECT $20::uuid, $21, decode($22, 'hex') FROM g)
  SELECT EXISTS (SELECT 1 FROM g))sql"};

const store::Statement kLockRuntimes{
    "gateway.lock_runtimes",
    "SELECT group_id::text, version, placement_generation, provisioning_state, node_id, encode(view_pb, 'hex') "
    "FROM gateway.group_runtime WHERE group_id = ANY($1::uuid[]) FOR UPDATE"};

// Only for groups that still exist: events of a deleted group leave nothing behind.
const store::Statement kUpsertRuntimes{"gateway.upsert_runtimes", R"sql(
  INSERT INTO gateway.group_runtime (group_id, version, placement_generation, provisioning_state, node_id, view_pb)
  SELECT r.id::uuid, r.version, r.placement_generation, r.state, r.node, decode(r.view, 'hex')
  FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[])
    AS r(id, version, placement_generation, state, node, view)
  WHERE EXISTS (SELECT 1 FROM gateway.container_groups g WHERE g.group_id = r.id::uuid)
  ON CONFLICT (group_id) DO UPDATE SET version = EXCLUDED.version,
    placement_generation = EXCLUDED.placement_generation, provisioning_state = EXCLUDED.provisioning_state,
    node_id = EXCLUDED.node_id, view_pb = EXCLUDED.view_pb, updated_at = now())sql"};

// The groups' create or update operations (ARM's Azure-AsyncOperation) are done.
const store::Statement kFinishOperations{"gateway.finish_operations", R"sql(
  UPDATE gateway.operations o SET status = u.outcome, ended_at = now(),
    error_code = CASE WHEN u.outcome = 'Failed' THEN 'DeploymentFailed' ELSE '' END,
    error_message = CASE WHEN u.outcome = 'Failed' THEN u.message ELSE '' END
  FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, outcome, message)
    JOIN gateway.container_groups g ON g.group_id = u.id::uuid
  WHERE o.status = 'InProgress' AND o.kind IN ('create', 'update') AND
    o.resource_id = '/subscriptions/' || g.subscription_id || '/resourceGroups/' || g.resource_group ||
      '/providers/Microsoft.ContainerInstance/containerGroups/' || g.name)sql"};

GroupRecord ReadRecord(const pqxx::row& row) {
  GroupRecord record;
  record.key = {row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>()};
  record.group_id = row[3].as<std::string>();
  record.generation = row[4].as<int64_t>();
  if (!record.spec.ParseFromString(store::HexDecode(row[5].as<std::string>()))) {
    throw StoreUnavailable("stored spec of " + record.key.name + " does not parse");
  }
  if (!row[6].is_null()) record.runtime = ReadRuntime(record.group_id, row, 6);
  return record;
}

void WriteOperation(pqxx::work& tx, const OperationRecord& op) {
  tx.exec_params(
      "INSERT INTO gateway.operations (id, subscription_key, kind, resource_id, status, started_at, ended_at, "
      "error_code, error_message) VALUES ($1, $2, $3, $4, $5, $6::timestamptz, NULLIF($7, '')::timestamptz, $8, $9)",
      op.id, Lower(op.subscription_id), op.kind, op.resource_id, op.status, op.started_at, op.ended_at, op.error_code,
      op.error_message);
}

}  // namespace

std::vector<store::Migration> GatewayMigrations() {
  return {
      {1, "container groups, operations, tokens, outbox",
       R"sql(
        CREATE TABLE container_groups (
          subscription_key   text NOT NULL,
          resource_group_key text NOT NULL,
          name_key           text NOT NULL,
          subscription_id    text NOT NULL,
          resource_group     text NOT NULL,
          name               text NOT NULL,
          group_id           uuid NOT NULL UNIQUE,
          generation         bigint NOT NULL,
          spec_pb            bytea NOT NULL,   -- skiff.containerinstance.v1.ContainerGroup, secrets sealed
          spec               jsonb NOT NULL,   -- the same, readable by operators
          created_at         timestamptz NOT NULL DEFAULT now(),
          updated_at         timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (subscription_key, resource_group_key, name_key)
        );
        CREATE TABLE operations (
          id               uuid PRIMARY KEY,
          subscription_key text NOT NULL,
          kind             text NOT NULL,
          resource_id      text NOT NULL,
          status           text NOT NULL,
          started_at       timestamptz NOT NULL,
          ended_at         timestamptz,
          error_code       text NOT NULL DEFAULT '',
          error_message    text NOT NULL DEFAULT ''
        );
        CREATE TABLE api_tokens (
          token_hash       text PRIMARY KEY,   -- sha256 of the token; the token itself is never stored
          subscription_id  text NOT NULL,
          name             text NOT NULL DEFAULT '',
          created_at       timestamptz NOT NULL DEFAULT now(),
          expires_at       timestamptz
        );
      )sql" + store::OutboxTableSql()},
      {2, "index of creates per subscription, for create-rate limits",
       "CREATE INDEX operations_creates ON operations (subscription_key, started_at) WHERE kind = 'create';"},
      // Quota checks read one row per subscription instead of summing every group on each PUT:
      // a trigger keeps the counts in the same transaction as the group write.
      {3, "per-subscription usage counters",
       R"sql(
        CREATE FUNCTION gateway.spec_cores(spec jsonb) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
          SELECT coalesce(sum((c->'properties'->'resources'->'requests'->>'cpu')::double precision), 0)
          FROM jsonb_array_elements(coalesce(spec->'properties'->'containers', '[]'::jsonb)) c $$;
        ALTER TABLE container_groups ADD COLUMN cores double precision
          GENERATED ALWAYS AS (gateway.spec_cores(spec)) STORED;
        CREATE TABLE subscription_usage (
          subscription_key text PRIMARY KEY,
          groups           bigint NOT NULL DEFAULT 0,
          cores            double precision NOT NULL DEFAULT 0
        );
        INSERT INTO subscription_usage SELECT subscription_key, count(*), sum(cores) FROM container_groups GROUP BY 1;
        CREATE FUNCTION gateway.track_usage() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE gateway.subscription_usage SET groups = groups - 1, cores = cores - OLD.cores
              WHERE subscription_key = OLD.subscription_key;
          END IF;
          IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO gateway.subscription_usage VALUES (NEW.subscription_key, 1, NEW.cores)
              ON CONFLICT (subscription_key) DO UPDATE
              SET groups = gateway.subscription_usage.groups + 1, cores = gateway.subscription_usage.cores + EXCLUDED.cores;
          END IF;
          RETURN NULL;
        END $$;
        CREATE TRIGGER container_groups_usage AFTER INSERT OR UPDATE OR DELETE ON container_groups
          FOR EACH ROW EXECUTE FUNCTION gateway.track_usage();
      )sql"},
      // The counters row serialized every create of a subscription behind one row lock; the
      // quotas bound the rows per subscription, so summing them (a primary-key range) is cheap.
      {4, "usage summed from the groups instead of counters",
       "DROP TRIGGER container_groups_usage ON container_groups; DROP FUNCTION gateway.track_usage(); "
       "DROP TABLE subscription_usage;"},
      // The read model: what the scheduler and the nodes report about each group.
      {5, "group runtime (read model)",
       R"sql(
        CREATE TABLE group_runtime (
          group_id             uuid PRIMARY KEY,
          version              bigint NOT NULL,
          placement_generation bigint NOT NULL,
          provisioning_state   text NOT NULL,
          node_id              text NOT NULL,
          view_pb              bytea NOT NULL,  -- skiff.gateway.v1.GroupRuntimeRecord
          updated_at           timestamptz NOT NULL DEFAULT now()
        );
      )sql"},
      {6, "service principals (OAuth2 client credentials)",
       R"sql(
        CREATE TABLE service_principals (
          client_id        uuid PRIMARY KEY,
          secret_hash      text NOT NULL,     -- sha256 of a 256-bit random secret; the secret is never stored
          subscription_id  text NOT NULL,
          name             text NOT NULL DEFAULT '',
          created_at       timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX api_tokens_expiry ON api_tokens (expires_at) WHERE expires_at IS NOT NULL;
      )sql"},
      // Finishing a group's operation looks it up by resource id among those in progress.
      {7, "index of operations in progress",
       "CREATE INDEX operations_in_progress ON operations (resource_id) WHERE status = 'InProgress';"},
      // The generated column ran a SQL function (planned anew) on every write; the gateway
      // computes the same sum (RequestedCores) and writes it.
      {8, "cores written by the gateway",
       "ALTER TABLE container_groups ALTER COLUMN cores DROP EXPRESSION; "
       "ALTER TABLE container_groups ALTER COLUMN cores SET NOT NULL; DROP FUNCTION gateway.spec_cores(jsonb);"},
      // Subscription ids are lower case wherever they are stored or published: a group created
      // through a differently-cased URL is one every view (and every other service) finds.
      {9, "subscription ids in lower case",
       "UPDATE container_groups SET subscription_id = lower(subscription_id) WHERE subscription_id <> lower(subscription_id); "
       "UPDATE api_tokens SET subscription_id = lower(subscription_id) WHERE subscription_id <> lower(subscription_id); "
       "UPDATE service_principals SET subscription_id = lower(subscription_id) WHERE subscription_id <> lower(subscription_id);"},
  };
}

SubscriptionUsage PgGroupStore::Usage(const std::string& subscription_id, int64_t now_ms, int64_t count_cap) {
  return GuardedRead(pool_, [&](pqxx::nontransaction& tx) {
    // One index range scan per table, bounded by the quotas: the subscription's groups (its
    // primary-key prefix), and its most recent creates of the last hour, at most `count_cap`
    // of them (beyond the limit the exact number does not matter); the 5-minute window is the
    // newest part of the same rows.
    auto rows = store::ExecPrepared(tx, kUsage, Lower(subscription_id), now_ms, count_cap);
    SubscriptionUsage usage;
    usage.groups = rows[0][0].as<int64_t>();
    usage.cores = rows[0][1].as<double>();
    usage.creates_last_5_minutes = rows[0][2].as<int64_t>();
    usage.creates_last_hour = rows[0][3].as<int64_t>();
    usage.oldest_create_in_5_minutes_ms = rows[0][4].as<int64_t>();
    usage.oldest_create_in_hour_ms = rows[0][5].as<int64_t>();
    return usage;
  });
}

std::optional<GroupRecord> PgGroupStore::Find(const GroupKey& key) {
  return GuardedRead(pool_, [&](pqxx::nontransaction& tx) -> std::optional<GroupRecord> {
    auto rows = tx.exec_params(std::string("SELECT ") + kColumns +
                                   kFrom + " WHERE subscription_key = $1 AND "
                                   "resource_group_key = $2 AND name_key = $3",
                               Lower(key.subscription_id), Lower(key.resource_group), Lower(key.name));
    if (rows.empty()) return std::nullopt;
    return ReadRecord(rows[0]);
  });
}

bool PgGroupStore::Insert(const GroupRecord& record, const std::optional<OperationRecord>& operation,
                          const store::OutboxEntry& event) {
  // One statement, so one round trip and no BEGIN/COMMIT: a statement is its own transaction,
  // so the group, its operation and its event are written together or not at all.
  const OperationRecord op = operation.value_or(OperationRecord{});
  return TranslateErrors([&] {
    return store::AutoCommit(pool_, [&](pqxx::nontransaction& tx) {
      auto inserted = store::ExecPrepared(
          tx, kInsertGroup, Lower(record.key.subscription_id), Lower(record.key.resource_group),
          Lower(record.key.name), record.key.subscription_id, record.key.resource_group, record.key.name,
          record.group_id, record.generation, store::HexEncode(record.spec.SerializeAsString()), ToJson(record.spec),
          operation.has_value(), op.id.empty() ? record.group_id : op.id, op.kind, op.resource_id, op.status,
          op.started_at.empty() ? "epoch" : op.started_at, op.ended_at, op.error_code, op.error_message,
          event.event_id, event.subject, store::HexEncode(event.payload), RequestedCores(record.spec));
      return inserted[0][0].as<bool>();
    });
  });
}

bool PgGroupStore::Update(const GroupRecord& record, int64_t expected_generation,
                          const std::optional<OperationRecord>& operation, const store::OutboxEntry& event) {
  return Guarded(pool_, [&](pqxx::work& tx) {
    auto updated = tx.exec_params(
        "UPDATE gateway.container_groups SET generation = $4, spec_pb = decode($5, 'hex'), spec = $6::jsonb, "
        "cores = $8, updated_at = now() WHERE subscription_key = $1 AND resource_group_key = $2 AND name_key = $3 AND "
        "generation = $7",
        Lower(record.key.subscription_id), Lower(record.key.resource_group), Lower(record.key.name), record.generation,
        store::HexEncode(record.spec.SerializeAsString()), ToJson(record.spec), expected_generation,
        RequestedCores(record.spec));
    if (updated.affected_rows() == 0) return false;
    if (operation) WriteOperation(tx, *operation);
    store::AppendToOutbox(tx, kGatewaySchema, event);
    return true;
  });
}

bool PgGroupStore::Remove(const GroupKey& key, int64_t expected_generation, const OperationRecord& operation,
                          const store::OutboxEntry& event) {
  return Guarded(pool_, [&](pqxx::work& tx) {
    auto removed = tx.exec_params(
        "DELETE FROM gateway.container_groups WHERE subscription_key = $1 AND resource_group_key = $2 AND "
        "name_key = $3 AND generation = $4 RETURNING group_id",
        Lower(key.subscription_id), Lower(key.resource_group), Lower(key.name), expected_generation);
    if (removed.empty()) return false;
    tx.exec_params("DELETE FROM gateway.group_runtime WHERE group_id = $1", removed[0][0].as<std::string>());
    WriteOperation(tx, operation);
    store::AppendToOutbox(tx, kGatewaySchema, event);
    return true;
  });
}

std::vector<GroupRecord> PgGroupStore::List(const std::string& subscription_id, const std::string& resource_group,
                                            const std::optional<ListCursor>& after, int limit) {
  return GuardedRead(pool_, [&](pqxx::nontransaction& tx) {
    std::string after_rg = after ? after->resource_group_key : "";
    std::string after_name = after ? after->name_key : "";
    pqxx::result rows;
    if (resource_group.empty()) {
      rows = tx.exec_params(std::string("SELECT ") + kColumns +
                                kFrom + " WHERE subscription_key = $1 AND "
                                "(resource_group_key, name_key) > ($2, $3) ORDER BY resource_group_key, name_key "
                                "LIMIT $4",
                            Lower(subscription_id), after_rg, after_name, limit);
    } else {
      rows = tx.exec_params(std::string("SELECT ") + kColumns +
                                kFrom + " WHERE subscription_key = $1 AND "
                                "resource_group_key = $2 AND name_key > $3 ORDER BY name_key LIMIT $4",
                            Lower(subscription_id), Lower(resource_group), after_name, limit);
    }
    std::vector<GroupRecord> records;
    records.reserve(rows.size());
    for (const auto& row : rows) records.push_back(ReadRecord(row));
    return records;
  });
}

std::optional<OperationRecord> PgGroupStore::FindOperation(const std::string& subscription_id, const std::string& id) {
  return GuardedRead(pool_, [&](pqxx::nontransaction& tx) -> std::optional<OperationRecord> {
    auto rows = tx.exec_params(
        "SELECT id::text, kind, resource_id, status, "
        "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
        "COALESCE(to_char(ended_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), ''), error_code, "
        "error_message FROM gateway.operations WHERE id = $1::uuid AND subscription_key = $2",
        id, Lower(subscription_id));
    if (rows.empty()) return std::nullopt;
    const auto& row = rows[0];
    OperationRecord op;
    op.id = row[0].as<std::string>();
    op.subscription_id = subscription_id;
    op.kind = row[1].as<std::string>();
    op.resource_id = row[2].as<std::string>();
    op.status = row[3].as<std::string>();
    op.started_at = row[4].as<std::string>();
    op.ended_at = row[5].as<std::string>();
    op.error_code = row[6].as<std::string>();
    op.error_message = row[7].as<std::string>();
    return op;
  });
}

std::optional<std::string> PgGroupStore::SubscriptionForToken(const std::string& token_hash) {
  return GuardedRead(pool_, [&](pqxx::nontransaction& tx) -> std::optional<std::string> {
    auto rows = tx.exec_params(
        "SELECT subscription_id FROM gateway.api_tokens WHERE token_hash = $1 AND "
        "(expires_at IS NULL OR expires_at > now())",
        token_hash);
    if (rows.empty()) return std::nullopt;
    return rows[0][0].as<std::string>();
  });
}

void PgGroupStore::AddToken(const std::string& token_hash, const std::string& subscription_id, const std::string& name) {
  Guarded(pool_, [&](pqxx::work& tx) {
    tx.exec_params("INSERT INTO gateway.api_tokens (token_hash, subscription_id, name) VALUES ($1, $2, $3)", token_hash,
                   Lower(subscription_id), name);
  });
}

int PgGroupStore::RewriteSpecs(
    const std::function<bool(const GroupRecord& record, containerinstance::v1::ContainerGroup* spec)>& reseal) {
  std::vector<std::string> ids = GuardedRead(pool_, [&](pqxx::nontransaction& tx) {
    std::vector<std::string> out;
    for (const auto& row : tx.exec("SELECT group_id::text FROM gateway.container_groups ORDER BY group_id")) {
      out.push_back(row[0].as<std::string>());
    }
    return out;
  });
  int rewritten = 0;
  for (const auto& id : ids) {
    rewritten += Guarded(pool_, [&](pqxx::work& tx) {
      auto rows = tx.exec_params(std::string("SELECT ") + kColumns + kFrom + " WHERE group_id = $1::uuid FOR UPDATE OF container_groups", id);
      if (rows.empty()) return 0;  // deleted meanwhile
      GroupRecord record = ReadRecord(rows[0]);
      containerinstance::v1::ContainerGroup spec = record.spec;
      if (!reseal(record, &spec)) return 0;
      tx.exec_params("UPDATE gateway.container_groups SET spec_pb = decode($2, 'hex'), spec = $3::jsonb WHERE group_id = $1::uuid",
                     id, store::HexEncode(spec.SerializeAsString()), ToJson(spec));
      return 1;
    });
  }
  return rewritten;
}

std::optional<ServicePrincipal> PgGroupStore::FindServicePrincipal(const std::string& client_id) {
  if (!crypto::IsUuid(client_id)) return std::nullopt;
  return GuardedRead(pool_, [&](pqxx::nontransaction& tx) -> std::optional<ServicePrincipal> {
    auto rows = tx.exec_params(
        "SELECT client_id::text, secret_hash, subscription_id, name FROM gateway.service_principals "
        "WHERE client_id = $1::uuid",
        client_id);
    if (rows.empty()) return std::nullopt;
    return ServicePrincipal{rows[0][0].as<std::string>(), rows[0][1].as<std::string>(), rows[0][2].as<std::string>(),
                            rows[0][3].as<std::string>()};
  });
}

void PgGroupStore::AddServicePrincipal(const ServicePrincipal& principal) {
  Guarded(pool_, [&](pqxx::work& tx) {
    tx.exec_params(
        "INSERT INTO gateway.service_principals (client_id, secret_hash, subscription_id, name) "
        "VALUES ($1::uuid, $2, $3, $4)",
        principal.client_id, principal.secret_hash, Lower(principal.subscription_id), principal.name);
  });
}

void PgGroupStore::AddExpiringToken(const std::string& token_hash, const std::string& subscription_id,
                                    const std::string& name, std::chrono::system_clock::time_point expires_at) {
  const int64_t expires_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(expires_at.time_since_epoch()).count();
  Guarded(pool_, [&](pqxx::work& tx) {
    // Issued tokens expire; their rows go a day later (a bounded sweep on the index).
    tx.exec("DELETE FROM gateway.api_tokens WHERE token_hash IN (SELECT token_hash FROM gateway.api_tokens "
            "WHERE expires_at < now() - interval '1 day' LIMIT 100)");
    tx.exec_params(
        "INSERT INTO gateway.api_tokens (token_hash, subscription_id, name, expires_at) "
        "VALUES ($1, $2, $3, to_timestamp($4 / 1000.0))",
        token_hash, Lower(subscription_id), name, expires_ms);
  });
}

void PgGroupStore::UpdateRuntimes(const std::vector<std::string>& group_ids, const Fold& fold) {
  std::vector<std::string> ids;
  for (const auto& id : group_ids) {
    if (crypto::IsUuid(id)) ids.push_back(id);  // anything else names no group of ours
  }
  if (ids.empty()) return;
  Guarded(pool_, [&](pqxx::work& tx) {
    std::map<std::string, GroupRuntime> runtimes;
    for (const auto& row : store::ExecPrepared(tx, kLockRuntimes, store::ArrayLiteral(ids))) {
      const std::string id = row[0].as<std::string>();
      runtimes.emplace(id, ReadRuntime(id, row, 1));
    }
    // Written back in two statements for the whole batch: the runtimes, and the operations
    // they finish. The last runtime of a group wins.
    std::map<std::string, const GroupRuntime*> latest;
    const std::vector<GroupRuntime> folded = fold(runtimes);
    for (const auto& runtime : folded) {
      if (crypto::IsUuid(runtime.group_id)) latest[runtime.group_id] = &runtime;
    }
    std::vector<std::string> group_ids, states, nodes, views, finished_ids, outcomes, messages;
    std::vector<long long> versions, placement_generations;
    for (const auto& [id, runtime] : latest) {
      gateway::v1::GroupRuntimeRecord stored;
      *stored.mutable_group() = runtime->group;
      stored.mutable_containers()->insert(runtime->containers.begin(), runtime->containers.end());
      for (const auto& event_id : runtime->recent_event_ids) stored.add_recent_event_ids(event_id);
      group_ids.push_back(id);
      versions.push_back(runtime->version);
      placement_generations.push_back(runtime->placement_generation);
      states.push_back(runtime->provisioning_state);
      nodes.push_back(runtime->node_id);
      views.push_back(store::HexEncode(stored.SerializeAsString()));
      if (auto outcome = OperationOutcome(*runtime)) {
        finished_ids.push_back(id);
        outcomes.push_back(*outcome);
        messages.push_back(runtime->group.events().empty()
                               ? std::string()
                               : runtime->group.events(runtime->group.events_size() - 1).message());
      }
    }
    if (group_ids.empty()) return;
    store::ExecPrepared(tx, kUpsertRuntimes, store::ArrayLiteral(group_ids), store::NumberArrayLiteral(versions),
                        store::NumberArrayLiteral(placement_generations), store::ArrayLiteral(states),
                        store::ArrayLiteral(nodes), store::ArrayLiteral(views));
    if (!finished_ids.empty()) {
      store::ExecPrepared(tx, kFinishOperations, store::ArrayLiteral(finished_ids), store::ArrayLiteral(outcomes),
                          store::ArrayLiteral(messages));
    }
  });
}

}  // namespace skiff::gateway
