#include "skiff/scheduler/pg_scheduler_store.h"

#include <algorithm>
#include <set>
#include <pqxx/pqxx>

#include "skiff/crypto/crypto.h"
#include "skiff/scheduler/scheduler_service.h"
#include "skiff/store/arrays.h"
#include "skiff/store/outbox.h"
#include "skiff/store/pool.h"

namespace skiff::scheduler {

namespace {

// Every group column a GroupRecord needs, in RowToGroup's order.
constexpr const char* kGroupColumns =
    "g.group_id::text, g.subscription_id, g.resource_group, g.name, g.generation, encode(g.spec, 'hex'), "
    "g.causation_id, g.state, coalesce(g.node_id, ''), g.placement_generation, g.waiting_since_ms, g.reason, "
    "g.waiting_announced";

int64_t ToMillis(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
TimePoint FromMillis(int64_t ms) { return TimePoint(std::chrono::milliseconds(ms)); }

GroupRecord RowToGroup(const pqxx::row& row, int offset = 0) {
  GroupRecord record;
  record.ref.set_group_id(row[offset + 0].as<std::string>());
  record.ref.set_subscription_id(row[offset + 1].as<std::string>());
  record.ref.set_resource_group(row[offset + 2].as<std::string>());
  record.ref.set_name(row[offset + 3].as<std::string>());
  record.ref.set_generation(row[offset + 4].as<int64_t>());
  record.spec = store::HexDecode(row[offset + 5].as<std::string>());
  record.causation_id = row[offset + 6].as<std::string>();
  record.state = row[offset + 7].as<std::string>();
  record.node_id = row[offset + 8].as<std::string>();
  record.placement_generation = row[offset + 9].as<int64_t>();
  record.waiting_since = FromMillis(row[offset + 10].as<int64_t>());
  record.reason = row[offset + 11].as<std::string>();
  record.waiting_announced = row[offset + 12].as<bool>();
  return record;
}

constexpr const char* kNodeColumns =
    "n.node_id, n.zone, n.os_type, n.cpu, n.memory_gb, n.gpu, n.condition, n.version, n.microvm";
constexpr int kNodeColumnCount = 9;

NodeSpec RowToNode(const pqxx::row& row) {
  NodeSpec spec;
  spec.node_id = row[0].as<std::string>();
  spec.zone = row[1].as<std::string>();
  spec.os_type = row[2].as<std::string>();
  spec.capacity = {row[3].as<double>(), row[4].as<double>(), row[5].as<int>()};
  spec.condition = ParseCondition(row[6].as<std::string>());
  spec.version = row[7].as<int64_t>();
  spec.microvm = row[8].as<bool>();
  return spec;
}

// Nodes joined with the groups placed on them: one statement, so each node's version and its
// placements come from the same snapshot.
std::vector<StoredNode> LoadJoined(pqxx::transaction_base& tx, const std::optional<std::string>& node_id) {
  const std::string sql = std::string("SELECT ") + kNodeColumns + ", " + kGroupColumns +
                          " FROM scheduler.nodes n LEFT JOIN scheduler.groups g ON g.node_id = n.node_id AND "
                          "g.state = 'Placed'" +
                          (node_id ? " WHERE n.node_id = $1" : "") + " ORDER BY n.node_id";
  pqxx::result rows = node_id ? tx.exec_params(sql, *node_id) : tx.exec(sql);
  std::vector<StoredNode> nodes;
  for (const auto& row : rows) {
    if (nodes.empty() || nodes.back().spec.node_id != row[0].as<std::string>()) {
      nodes.push_back({RowToNode(row), {}});
    }
    if (!row[kNodeColumnCount].is_null()) {
      GroupRecord group = RowToGroup(row, kNodeColumnCount);
      containerinstance::v1::ContainerGroup spec;
      spec.ParseFromString(group.spec);
      nodes.back().placed.push_back(DemandOf(group.ref.group_id(), spec));
    }
  }
  return nodes;
}

struct Conflict {
  std::vector<std::string> nodes, groups;
};

}  // namespace

std::vector<store::Migration> SchedulerMigrations() {
  return {
      {1, "nodes, groups, outbox",
       R"sql(
        CREATE TABLE nodes (
          node_id           text PRIMARY KEY,
          zone              text NOT NULL DEFAULT '',
          os_type           text NOT NULL DEFAULT 'Linux',
          cpu               double precision NOT NULL,
          memory_gb         double precision NOT NULL,
          gpu               integer NOT NULL DEFAULT 0,
          condition         text NOT NULL DEFAULT 'Ready',   -- Ready | Cordoned | Draining | Lost
          version           bigint NOT NULL DEFAULT 0,       -- bumped by every placement change on it
          last_heartbeat_ms bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE groups (
          group_id             uuid PRIMARY KEY,
          subscription_id      text NOT NULL,
          resource_group       text NOT NULL,
          name                 text NOT NULL,
          generation           bigint NOT NULL,
          spec                 bytea NOT NULL,               -- ContainerGroup, secrets sealed
          causation_id         text NOT NULL DEFAULT '',
          state                text NOT NULL,                -- Waiting | Placed | Failed | Deleted
          node_id              text,
          placement_generation bigint NOT NULL DEFAULT 0,    -- fencing token sent to the node
          waiting_since_ms     bigint NOT NULL DEFAULT 0,
          reason               text NOT NULL DEFAULT '',
          waiting_announced    boolean NOT NULL DEFAULT false,
          updated_at           timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX groups_on_node ON groups (node_id) WHERE state = 'Placed';
        CREATE INDEX groups_waiting ON groups (waiting_since_ms) WHERE state = 'Waiting';
      )sql" + store::OutboxTableSql()},
      {2, "nodes that offer MicroVM isolation",
       R"sql(
        ALTER TABLE nodes ADD COLUMN microvm boolean NOT NULL DEFAULT false;
      )sql"},
  };
}

namespace {

const store::Statement kBumpNode{
    "scheduler.bump_node",
    "UPDATE scheduler.nodes SET version = version + 1 WHERE node_id = $1 AND version = $2 RETURNING version"};

const store::Statement kUpdateGroup{
    "scheduler.update_group",
    "UPDATE scheduler.groups SET generation = $2, spec = decode($3, 'hex'), causation_id = $4, state = $5, "
    "node_id = nullif($6, ''), placement_generation = $7, waiting_since_ms = $8, reason = $9, "
    "waiting_announced = $10, updated_at = now() "
    "WHERE group_id = $1 AND placement_generation = $11 AND state <> 'Deleted' RETURNING 1"};

// Returns the ids inserted; an id already there (a replica that got there first) is not.
const store::Statement kInsertGroups{
    "scheduler.insert_groups",
    "INSERT INTO scheduler.groups (group_id, subscription_id, resource_group, name, generation, spec, "
    "causation_id, state, node_id, placement_generation, waiting_since_ms, reason, waiting_announced) "
    "SELECT id::uuid, sub, rg, name, generation, decode(spec, 'hex'), causation, state, nullif(node, ''), "
    "placement_generation, waiting_since, reason, announced "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], "
    "$8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::text[], $13::boolean[]) "
    "AS g(id, sub, rg, name, generation, spec, causation, state, node, placement_generation, waiting_since, "
    "reason, announced) "
    "ON CONFLICT (group_id) DO NOTHING RETURNING group_id::text"};

// New groups' columns, as arrays for kInsertGroups.
struct NewGroupColumns {
  std::vector<std::string> ids, subscriptions, resource_groups, names, specs, causations, states, nodes, reasons,
      announced;
  std::vector<long long> generations, placement_generations, waiting_since;

  void Add(const GroupRecord& g) {
    ids.push_back(g.ref.group_id());
    subscriptions.push_back(g.ref.subscription_id());
    resource_groups.push_back(g.ref.resource_group());
    names.push_back(g.ref.name());
    generations.push_back(g.ref.generation());
    specs.push_back(store::HexEncode(g.spec));
    causations.push_back(g.causation_id);
    states.push_back(g.state);
    nodes.push_back(g.node_id);
    placement_generations.push_back(g.placement_generation);
    waiting_since.push_back(ToMillis(g.waiting_since));
    reasons.push_back(g.reason);
    announced.push_back(g.waiting_announced ? "t" : "f");
  }

  pqxx::result Insert(pqxx::transaction_base& tx) const {
    return store::ExecPrepared(tx, kInsertGroups, store::ArrayLiteral(ids), store::ArrayLiteral(subscriptions),
                               store::ArrayLiteral(resource_groups), store::ArrayLiteral(names),
                               store::NumberArrayLiteral(generations), store::ArrayLiteral(specs),
                               store::ArrayLiteral(causations), store::ArrayLiteral(states),
                               store::ArrayLiteral(nodes), store::NumberArrayLiteral(placement_generations),
                               store::NumberArrayLiteral(waiting_since), store::ArrayLiteral(reasons),
                               store::ArrayLiteral(announced));
  }
};

}  // namespace

CommitResult PgSchedulerStore::Commit(const WriteSet& writes) {
  CommitResult result;
  try {
    result.new_versions = store::InTransaction(pool_, [&](pqxx::work& tx) {
      Conflict conflict;
      std::map<std::string, int64_t> versions;
      for (const auto& [node_id, expected] : writes.node_versions) {  // std::map: a fixed lock order
        auto rows = store::ExecPrepared(tx, kBumpNode, node_id, expected);
        if (rows.empty()) {
          conflict.nodes.push_back(node_id);
        } else {
          versions[node_id] = rows[0][0].as<int64_t>();
        }
      }
      // New groups in one statement (a batch of creates is one round trip); changed ones each
      // with their own fence.
      NewGroupColumns inserts;
      for (const auto& write : writes.groups) {
        const GroupRecord& g = write.record;
        if (write.expected_generation < 0) {
          inserts.Add(g);
          continue;
        }
        auto rows = store::ExecPrepared(
            tx, kUpdateGroup, g.ref.group_id(), g.ref.generation(), store::HexEncode(g.spec), g.causation_id, g.state,
            g.node_id, g.placement_generation, ToMillis(g.waiting_since), g.reason, g.waiting_announced,
            write.expected_generation);
        if (rows.empty()) conflict.groups.push_back(g.ref.group_id());
      }
      if (!inserts.ids.empty()) {
        std::set<std::string> inserted;
        for (const auto& row : inserts.Insert(tx)) inserted.insert(row[0].as<std::string>());
        for (const auto& id : inserts.ids) {
          if (!inserted.count(id)) conflict.groups.push_back(id);
        }
      }
      if (!conflict.nodes.empty() || !conflict.groups.empty()) throw conflict;  // rolls back
      std::vector<store::OutboxEntry> events;
      events.reserve(writes.events.size());
      for (const auto& event : writes.events) events.push_back({0, event.event_id, event.subject, event.payload});
      store::AppendToOutbox(tx, kSchedulerSchema, events);
      return versions;
    });
    result.ok = true;
  } catch (const Conflict& conflict) {
    result.conflicting_nodes = conflict.nodes;
    result.conflicting_groups = conflict.groups;
    return result;
  }
  if (!writes.events.empty() && notify_) notify_();
  return result;
}

NodeSpec PgSchedulerStore::RegisterNode(const NodeSpec& node, TimePoint heartbeat) {
  return store::InTransaction(pool_, [&](pqxx::work& tx) {
    auto rows = tx.exec_params(
        std::string("INSERT INTO scheduler.nodes AS n (node_id, zone, os_type, cpu, memory_gb, gpu, last_heartbeat_ms, "
                    "microvm) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (node_id) DO UPDATE SET zone = $2, "
                    "os_type = $3, cpu = $4, memory_gb = $5, gpu = $6, last_heartbeat_ms = $7, microvm = $8 RETURNING ") +
            kNodeColumns,
        node.node_id, node.zone, node.os_type, node.capacity.cpu, node.capacity.memory_gb, node.capacity.gpu,
        ToMillis(heartbeat), node.microvm);
    return RowToNode(rows[0]);
  });
}

std::optional<int64_t> PgSchedulerStore::TransitionNode(const std::string& node_id,
                                                        const std::vector<NodeCondition>& from, NodeCondition to) {
  std::string allowed = "{";
  for (size_t i = 0; i < from.size(); ++i) allowed += (i ? "," : "") + std::string(ConditionName(from[i]));
  allowed += "}";
  return store::InTransaction(pool_, [&](pqxx::work& tx) -> std::optional<int64_t> {
    auto rows = tx.exec_params(
        "UPDATE scheduler.nodes SET condition = $2, version = version + 1 WHERE node_id = $1 AND "
        "condition = ANY($3::text[]) RETURNING version",
        node_id, ConditionName(to), allowed);
    if (rows.empty()) return std::nullopt;
    return rows[0][0].as<int64_t>();
  });
}

std::vector<StoredNode> PgSchedulerStore::LoadNodes() {
  return store::ReadOnly(pool_, [&](pqxx::nontransaction& tx) { return LoadJoined(tx, std::nullopt); });
}

std::optional<StoredNode> PgSchedulerStore::LoadNode(const std::string& node_id) {
  return store::ReadOnly(pool_, [&](pqxx::nontransaction& tx) -> std::optional<StoredNode> {
    auto nodes = LoadJoined(tx, node_id);
    if (nodes.empty()) return std::nullopt;
    return nodes.front();
  });
}

std::optional<GroupRecord> PgSchedulerStore::LoadGroup(const std::string& group_id) {
  if (!crypto::IsUuid(group_id)) return std::nullopt;  // a node's garbage never reaches SQL as a uuid
  return store::ReadOnly(pool_, [&](pqxx::nontransaction& tx) -> std::optional<GroupRecord> {
    auto rows = tx.exec_params(std::string("SELECT ") + kGroupColumns +
                                   " FROM scheduler.groups g WHERE g.group_id = $1::uuid",
                               group_id);
    if (rows.empty()) return std::nullopt;
    return RowToGroup(rows[0]);
  });
}

std::vector<GroupRecord> PgSchedulerStore::LoadGroups(const std::string& state, const std::string& node_id) {
  return store::ReadOnly(pool_, [&](pqxx::nontransaction& tx) {
    auto rows = tx.exec_params(std::string("SELECT ") + kGroupColumns +
                                   " FROM scheduler.groups g WHERE g.state = $1 AND ($2 = '' OR g.node_id = $2) "
                                   "ORDER BY g.waiting_since_ms",
                               state, node_id);
    std::vector<GroupRecord> groups;
    for (const auto& row : rows) groups.push_back(RowToGroup(row));
    return groups;
  });
}

std::optional<GroupRecord> PgSchedulerStore::DeleteGroup(const events::v1::GroupRef& ref, int64_t* node_version) {
  *node_version = -1;
  if (!crypto::IsUuid(ref.group_id())) return std::nullopt;
  return store::InTransaction(pool_, [&](pqxx::work& tx) -> std::optional<GroupRecord> {
    // The tombstone keeps a GroupCreated that another replica handles late from bringing it back.
    tx.exec_params(
        "INSERT INTO scheduler.groups (group_id, subscription_id, resource_group, name, generation, spec, state) "
        "VALUES ($1, $2, $3, $4, $5, '', 'Deleted') ON CONFLICT (group_id) DO NOTHING",
        ref.group_id(), ref.subscription_id(), ref.resource_group(), ref.name(), ref.generation());
    auto rows = tx.exec_params(std::string("SELECT ") + kGroupColumns +
                                   " FROM scheduler.groups g WHERE g.group_id = $1::uuid FOR UPDATE",
                               ref.group_id());
    GroupRecord before = RowToGroup(rows[0]);
    if (before.state == "Deleted" && before.spec.empty()) {
      return std::optional<GroupRecord>();  // it never got here
    }
    tx.exec_params(
        "UPDATE scheduler.groups SET state = 'Deleted', node_id = NULL, placement_generation = placement_generation "
        "+ 1, updated_at = now() WHERE group_id = $1::uuid",
        ref.group_id());
    if (before.state == "Placed") {
      auto bumped = tx.exec_params(
          "UPDATE scheduler.nodes SET version = version + 1 WHERE node_id = $1 RETURNING version", before.node_id);
      if (!bumped.empty()) *node_version = bumped[0][0].as<int64_t>();
    }
    return std::optional<GroupRecord>(before);
  });
}

}  // namespace skiff::scheduler
