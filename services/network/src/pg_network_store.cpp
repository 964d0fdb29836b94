#include "skiff/network/pg_network_store.h"

#include <google/protobuf/util/json_util.h>

#include <pqxx/pqxx>
#include <sstream>

#include "skiff/store/pool.h"

namespace skiff::network {

std::vector<store::Migration> NetworkMigrations() {
  return {
      {1, "virtual networks, subnets, claims and attachments", R"sql(
CREATE TABLE vnets (
  id text PRIMARY KEY,
  subscription_id text NOT NULL,
  resource_group text NOT NULL,
  name text NOT NULL,
  resource text NOT NULL
);
CREATE INDEX vnets_by_scope ON vnets (subscription_id, resource_group);
CREATE TABLE subnets (
  id text PRIMARY KEY,
  vnet_id text REFERENCES vnets (id) ON DELETE CASCADE,
  subscription_id text NOT NULL,
  name text NOT NULL,
  network bigint NOT NULL,
  length int NOT NULL,
  bridge text NOT NULL
);
CREATE TABLE claims (
  group_id text PRIMARY KEY,
  subscription_id text NOT NULL,
  resource_group text NOT NULL,
  name text NOT NULL,
  location text NOT NULL,
  subnet_id text NOT NULL,
  private_ip bigint NOT NULL,
  public_ip bigint,
  dns_label text,
  ports text NOT NULL DEFAULT '',
  confirmed boolean NOT NULL DEFAULT false,
  claimed_at bigint NOT NULL,
  UNIQUE (subnet_id, private_ip),
  UNIQUE (public_ip),
  UNIQUE (location, dns_label)
);
CREATE TABLE attachments (
  group_id text NOT NULL,
  netns_path text NOT NULL,
  agent text NOT NULL,
  node_id text NOT NULL,
  container_id text NOT NULL,
  subnet_id text NOT NULL,
  bridge text NOT NULL,
  conflist text NOT NULL,
  result text NOT NULL DEFAULT '',
  placement_generation bigint NOT NULL,
  complete boolean NOT NULL,
  PRIMARY KEY (group_id, netns_path)
);
CREATE INDEX attachments_by_agent ON attachments (agent);
CREATE INDEX attachments_by_group ON attachments (group_id);
)sql"},
  };
}

namespace {

std::string PortsText(const std::vector<v1::PublishedPort>& ports) {
  std::string text;
  for (const auto& p : ports) text += (text.empty() ? "" : " ") + std::to_string(p.port()) + "/" + p.protocol();
  return text;
}

std::vector<v1::PublishedPort> ParsePorts(const std::string& text) {
  std::vector<v1::PublishedPort> ports;
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    auto slash = word.find('/');
    if (slash == std::string::npos) continue;
    v1::PublishedPort port;
    port.set_port(std::stoi(word.substr(0, slash)));
    port.set_protocol(word.substr(slash + 1));
    ports.push_back(port);
  }
  return ports;
}

constexpr const char* kSubnetColumns = "id, coalesce(vnet_id, ''), subscription_id, name, network, length, bridge";
SubnetRow RowToSubnet(const pqxx::row& row, int at = 0) {
  SubnetRow s;
  s.id = row[at].as<std::string>();
  s.vnet_id = row[at + 1].as<std::string>();
  s.subscription_id = row[at + 2].as<std::string>();
  s.name = row[at + 3].as<std::string>();
  s.prefix = {static_cast<uint32_t>(row[at + 4].as<int64_t>()), row[at + 5].as<int>()};
  s.bridge = row[at + 6].as<std::string>();
  return s;
}

constexpr const char* kClaimColumns =
    "group_id, subscription_id, resource_group, name, location, subnet_id, private_ip, public_ip, "
    "coalesce(dns_label, ''), ports, confirmed, claimed_at";
GroupClaim RowToClaim(const pqxx::row& row) {
  GroupClaim c;
  c.group_id = row[0].as<std::string>();
  c.subscription_id = row[1].as<std::string>();
  c.resource_group = row[2].as<std::string>();
  c.name = row[3].as<std::string>();
  c.location = row[4].as<std::string>();
  c.subnet_id = row[5].as<std::string>();
  c.private_ip = static_cast<uint32_t>(row[6].as<int64_t>());
  if (!row[7].is_null()) c.public_ip = static_cast<uint32_t>(row[7].as<int64_t>());
  c.dns_label = row[8].as<std::string>();
  c.ports = ParsePorts(row[9].as<std::string>());
  c.confirmed = row[10].as<bool>();
  c.claimed_at = row[11].as<int64_t>();
  return c;
}

class PgNetworkTx : public NetworkTx {
 public:
  explicit PgNetworkTx(pqxx::work& tx) : tx_(tx) {}

  void LockAllocations() override { tx_.exec("SELECT pg_advisory_xact_lock(hashtext('skiff.network.allocations'))"); }

  std::optional<VnetRow> FindVnet(const std::string& vnet_id) override {
    auto rows = tx_.exec_params("SELECT id, subscription_id, resource_group, name, resource FROM network.vnets WHERE id = $1",
                                vnet_id);
    if (rows.empty()) return std::nullopt;
    return Vnet(rows[0]);
  }

  std::vector<VnetRow> ListVnets(const std::string& subscription_id, const std::string& resource_group) override {
    auto rows = tx_.exec_params(
        "SELECT id, subscription_id, resource_group, name, resource FROM network.vnets "
        "WHERE subscription_id = $1 AND ($2 = '' OR resource_group = $2) ORDER BY id",
        subscription_id, resource_group);
    std::vector<VnetRow> vnets;
    for (const auto& row : rows) vnets.push_back(Vnet(row));
    return vnets;
  }

  void SaveVnet(const VnetRow& vnet) override {
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(vnet.resource, &json);
    tx_.exec_params(
        "INSERT INTO network.vnets (id, subscription_id, resource_group, name, resource) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (id) DO UPDATE SET resource = excluded.resource",
        vnet.id, vnet.subscription_id, vnet.resource_group, vnet.name, json);
    tx_.exec_params("DELETE FROM network.subnets WHERE vnet_id = $1", vnet.id);
    for (const auto& s : vnet.subnets) SaveSubnet(s);
  }

  void DeleteVnet(const std::string& vnet_id) override {
    tx_.exec_params("DELETE FROM network.vnets WHERE id = $1", vnet_id);
  }

  std::vector<SubnetRow> AllSubnets() override {
    std::vector<SubnetRow> subnets;
    for (const auto& row : tx_.exec(std::string("SELECT ") + kSubnetColumns + " FROM network.subnets")) {
      subnets.push_back(RowToSubnet(row));
    }
    return subnets;
  }

  std::optional<SubnetRow> FindSubnet(const std::string& subnet_id) override {
    auto rows = tx_.exec_params(std::string("SELECT ") + kSubnetColumns + " FROM network.subnets WHERE id = $1", subnet_id);
    if (rows.empty()) return std::nullopt;
    return RowToSubnet(rows[0]);
  }

  void SaveSubnet(const SubnetRow& s) override {
    tx_.exec_params(
        "INSERT INTO network.subnets (id, vnet_id, subscription_id, name, network, length, bridge) "
        "VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET network = excluded.network, "
        "length = excluded.length",
        s.id, s.vnet_id, s.subscription_id, s.name, static_cast<int64_t>(s.prefix.network), s.prefix.length, s.bridge);
  }

  int64_t ClaimsInSubnet(const std::string& subnet_id) override {
    return tx_.exec_params("SELECT count(*) FROM network.claims WHERE subnet_id = $1", subnet_id)[0][0].as<int64_t>();
  }

  std::optional<GroupClaim> FindClaim(const std::string& group_id) override {
    auto rows = tx_.exec_params(std::string("SELECT ") + kClaimColumns + " FROM network.claims WHERE group_id = $1", group_id);
    if (rows.empty()) return std::nullopt;
    return RowToClaim(rows[0]);
  }

  std::set<uint32_t> PrivateAddressesInUse(const std::string& subnet_id) override {
    std::set<uint32_t> used;
    for (const auto& row : tx_.exec_params("SELECT private_ip FROM network.claims WHERE subnet_id = $1", subnet_id)) {
      used.insert(static_cast<uint32_t>(row[0].as<int64_t>()));
    }
    return used;
  }

  std::set<uint32_t> PublicAddressesInUse() override {
    std::set<uint32_t> used;
    for (const auto& row : tx_.exec("SELECT public_ip FROM network.claims WHERE public_ip IS NOT NULL")) {
      used.insert(static_cast<uint32_t>(row[0].as<int64_t>()));
    }
    return used;
  }

  std::optional<GroupClaim> LabelHolder(const std::string& location, const std::string& label) override {
    auto rows = tx_.exec_params(
        std::string("SELECT ") + kClaimColumns + " FROM network.claims WHERE location = $1 AND dns_label = $2", location,
        label);
    if (rows.empty()) return std::nullopt;
    return RowToClaim(rows[0]);
  }

  void SaveClaim(const GroupClaim& c) override {
    std::optional<int64_t> public_ip;
    if (c.public_ip) public_ip = static_cast<int64_t>(*c.public_ip);
    std::optional<std::string> label;
    if (!c.dns_label.empty()) label = c.dns_label;
    tx_.exec_params(
        "INSERT INTO network.claims (group_id, subscription_id, resource_group, name, location, subnet_id, private_ip, "
        "public_ip, dns_label, ports, confirmed, claimed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
        "ON CONFLICT (group_id) DO UPDATE SET subscription_id = excluded.subscription_id, resource_group = "
        "excluded.resource_group, name = excluded.name, location = excluded.location, subnet_id = excluded.subnet_id, "
        "private_ip = excluded.private_ip, public_ip = excluded.public_ip, dns_label = excluded.dns_label, "
        "ports = excluded.ports, confirmed = excluded.confirmed",
        c.group_id, c.subscription_id, c.resource_group, c.name, c.location, c.subnet_id,
        static_cast<int64_t>(c.private_ip), public_ip, label, PortsText(c.ports), c.confirmed, c.claimed_at);
  }

  void DeleteClaim(const std::string& group_id) override {
    tx_.exec_params("DELETE FROM network.claims WHERE group_id = $1", group_id);
  }

  std::vector<std::string> StaleUnconfirmedClaims(Millis claimed_before) override {
    std::vector<std::string> ids;
    for (const auto& row : tx_.exec_params(
             "SELECT group_id FROM network.claims WHERE NOT confirmed AND claimed_at < $1", claimed_before)) {
      ids.push_back(row[0].as<std::string>());
    }
    return ids;
  }

 private:
  VnetRow Vnet(const pqxx::row& row) {
    VnetRow vnet;
    vnet.id = row[0].as<std::string>();
    vnet.subscription_id = row[1].as<std::string>();
    vnet.resource_group = row[2].as<std::string>();
    vnet.name = row[3].as<std::string>();
    (void)google::protobuf::util::JsonStringToMessage(row[4].as<std::string>(), &vnet.resource);
    for (const auto& s : tx_.exec_params(
             std::string("SELECT ") + kSubnetColumns + " FROM network.subnets WHERE vnet_id = $1 ORDER BY id", vnet.id)) {
      vnet.subnets.push_back(RowToSubnet(s));
    }
    return vnet;
  }

  pqxx::work& tx_;
};

}  // namespace

void PgNetworkStore::InTransaction(const std::function<void(NetworkTx&)>& body) {
  store::InTransaction(pool_, [&](pqxx::work& tx) {
    PgNetworkTx view(tx);
    body(view);
  });
}

std::vector<std::pair<GroupClaim, SubnetRow>> PgNetworkStore::AllClaims() {
  return store::ReadOnly(pool_, [](pqxx::nontransaction& tx) {
    std::vector<std::pair<GroupClaim, SubnetRow>> all;
    auto rows = tx.exec(
        "SELECT c.group_id, c.subscription_id, c.resource_group, c.name, c.location, c.subnet_id, c.private_ip, "
        "c.public_ip, coalesce(c.dns_label, ''), c.ports, c.confirmed, c.claimed_at, "
        "s.id, coalesce(s.vnet_id, ''), s.subscription_id, s.name, s.network, s.length, s.bridge "
        "FROM network.claims c JOIN network.subnets s ON s.id = c.subnet_id");
    for (const auto& row : rows) all.emplace_back(RowToClaim(row), RowToSubnet(row, 12));
    return all;
  });
}

namespace {
std::vector<Attachment> QueryAttachments(store::ConnectionPool& pool, const std::string& agent, const std::string& group_id) {
  return store::ReadOnly(pool, [&](pqxx::nontransaction& tx) {
    std::vector<Attachment> all;
    for (const auto& row : tx.exec_params(
             "SELECT group_id, netns_path, agent, node_id, container_id, subnet_id, bridge, conflist, "
             "placement_generation, complete, result FROM network.attachments WHERE agent = $1 "
             "AND ($2 = '' OR group_id = $2)",
             agent, group_id)) {
      Attachment a;
      a.group_id = row[0].as<std::string>();
      a.netns_path = row[1].as<std::string>();
      a.agent = row[2].as<std::string>();
      a.node_id = row[3].as<std::string>();
      a.container_id = row[4].as<std::string>();
      a.subnet_id = row[5].as<std::string>();
      a.bridge = row[6].as<std::string>();
      a.conflist = row[7].as<std::string>();
      a.placement_generation = row[8].as<int64_t>();
      a.complete = row[9].as<bool>();
      a.result = row[10].as<std::string>();
      all.push_back(a);
    }
    return all;
  });
}
}  // namespace

std::vector<Attachment> PgNetworkStore::Attachments(const std::string& agent) {
  return QueryAttachments(pool_, agent, "");
}

std::vector<Attachment> PgNetworkStore::GroupAttachments(const std::string& agent, const std::string& group_id) {
  if (group_id.empty()) return {};
  return QueryAttachments(pool_, agent, group_id);
}

void PgNetworkStore::SaveAttachment(const Attachment& a) {
  store::InTransaction(pool_, [&](pqxx::work& tx) {
    tx.exec_params(
        "INSERT INTO network.attachments (group_id, netns_path, agent, node_id, container_id, subnet_id, bridge, conflist, "
        "placement_generation, complete, result) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (group_id, netns_path) "
        "DO UPDATE SET agent = excluded.agent, node_id = excluded.node_id, container_id = excluded.container_id, "
        "subnet_id = excluded.subnet_id, bridge = excluded.bridge, conflist = excluded.conflist, "
        "placement_generation = excluded.placement_generation, complete = excluded.complete, result = excluded.result",
        a.group_id, a.netns_path, a.agent, a.node_id, a.container_id, a.subnet_id, a.bridge, a.conflist,
        a.placement_generation, a.complete, a.result);
  });
}

void PgNetworkStore::DeleteAttachment(const std::string& group_id, const std::string& netns_path) {
  store::InTransaction(pool_, [&](pqxx::work& tx) {
    tx.exec_params("DELETE FROM network.attachments WHERE group_id = $1 AND netns_path = $2", group_id, netns_path);
  });
}

}  // namespace skiff::network
