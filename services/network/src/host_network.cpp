#include "skiff/network/host_network.h"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

namespace skiff::network {

namespace {

v1::AttachReply AttachError(const std::string& code, const std::string& message) {
  v1::AttachReply reply;
  reply.set_ok(false);
  reply.set_error_code(code);
  reply.set_error_message(message);
  return reply;
}

std::string ContainerId(const v1::AttachRequest& request) {
  // Unique per namespace: two copies of a group (old and new placement) are two attachments.
  std::string base = request.netns_path().substr(request.netns_path().find_last_of('/') + 1);
  for (auto& c : base) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  }
  return base;
}

std::vector<std::string> Words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

}  // namespace

HostNetwork::HostNetwork(NetworkStore& store, CniRunner& cni, HostPlumbing& plumbing, HostNetworkOptions options)
    : store_(store), cni_(cni), plumbing_(plumbing), options_(std::move(options)) {}

std::string HostNetwork::ConfList(const SubnetRow& subnet, const GroupClaim& claim, bool masquerade) {
  std::ostringstream out;
  out << R"({"cniVersion":"1.0.0","name":"skiff-)" << subnet.bridge << R"(","plugins":[)";
  out << R"({"type":"bridge","bridge":")" << subnet.bridge << R"(","isGateway":true,"ipMasq":)"
      << (masquerade ? "true" : "false") << R"(,"hairpinMode":true,"ipam":{"type":"static","addresses":[{"address":")"
      << FormatIpv4(claim.private_ip) << "/" << subnet.prefix.length << R"(","gateway":")"
      << FormatIpv4(GatewayOf(subnet.prefix)) << R"("}],"routes":[{"dst":"0.0.0.0/0"}]}})";
  if (claim.public_ip && !claim.ports.empty()) {
    out << R"(,{"type":"portmap","snat":true,"capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[)";
    for (size_t i = 0; i < claim.ports.size(); ++i) {
      const auto& port = claim.ports[i];
      out << (i ? "," : "") << R"({"hostPort":)" << port.port() << R"(,"containerPort":)" << port.port()
          << R"(,"protocol":")" << (port.protocol() == "UDP" ? "udp" : "tcp") << R"(","hostIP":")"
          << FormatIpv4(*claim.public_ip) << R"("})";
    }
    out << "]}}";
  }
  out << R"(,{"type":"firewall","backend":"iptables"}]})";
  return out.str();
}

v1::AttachReply HostNetwork::Attach(const v1::AttachRequest& request) {
  const std::string& group_id = request.group().group_id();
  if (group_id.empty() || request.netns_path().empty()) {
    return AttachError("InvalidRequest", "An attach needs the group id and its namespace path.");
  }
  std::optional<GroupClaim> claim;
  std::optional<SubnetRow> subnet;
  store_.InTransaction([&](NetworkTx& tx) {
    claim = tx.FindClaim(group_id);
    if (claim) subnet = tx.FindSubnet(claim->subnet_id);
  });
  if (!claim || !subnet) {
    return AttachError("NetworkNotClaimed", "The group " + group_id + " holds no address: it was deleted, or created "
                                            "before the network service ran.");
  }
  const std::string conflist = ConfList(*subnet, *claim, options_.masquerade);
  std::lock_guard lock(mutex_);
  LoadBridgesLocked();
  if (!plumbing_.NamespaceExists(request.netns_path())) {
    return AttachError("NamespaceNotFound", "The namespace " + request.netns_path() + " does not exist on this host.");
  }
  bool attached = false;
  for (const auto& existing : store_.GroupAttachments(options_.agent, group_id)) {
    if (existing.netns_path == request.netns_path()) {
      if (existing.complete && existing.conflist == conflist) {
        attached = true;  // a node asking again (after its restart): nothing to do
        continue;
      }
      if (auto error = Undo(existing)) return AttachError("NetworkFailed", *error);
      continue;
    }
    // Another copy of the group holds its address on this host. The newest placement wins;
    // an older one may not take the address back.
    if (existing.placement_generation > request.placement_generation()) {
      return AttachError("StalePlacement", "A newer placement of the group holds its address on this host.");
    }
    if (auto error = Undo(existing)) return AttachError("NetworkFailed", *error);
  }
  if (!attached) {
    Attachment attachment;
    attachment.group_id = group_id;
    attachment.netns_path = request.netns_path();
    attachment.agent = options_.agent;
    attachment.node_id = request.node_id();
    attachment.container_id = ContainerId(request);
    attachment.subnet_id = subnet->id;
    attachment.bridge = subnet->bridge;
    attachment.conflist = conflist;
    attachment.placement_generation = request.placement_generation();
    store_.SaveAttachment(attachment);  // before ADD: a crash in between is undone at start-up
    auto outcome = cni_.Add(conflist, attachment.container_id, request.netns_path(), options_.cni_ifname);
    if (!outcome.ok) {
      cni_.Del(conflist, "", attachment.container_id, request.netns_path(), options_.cni_ifname);
      store_.DeleteAttachment(group_id, request.netns_path());
      return AttachError("NetworkFailed", "CNI ADD failed: " + outcome.error);
    }
    attachment.complete = true;
    attachment.result = outcome.result;
    store_.SaveAttachment(attachment);
    AddUserLocked(attachment, {subnet->bridge, subnet->Domain(), GatewayOf(subnet->prefix)});
  }
  if (auto error = SyncLocked()) return AttachError("NetworkFailed", "isolation rules: " + *error);

  v1::AttachReply reply;
  reply.set_ok(true);
  reply.set_ip(FormatIpv4(claim->private_ip));
  reply.set_prefix_length(subnet->prefix.length);
  reply.set_gateway(FormatIpv4(GatewayOf(subnet->prefix)));
  if (claim->public_ip) reply.set_public_ip(FormatIpv4(*claim->public_ip));
  reply.set_bridge(subnet->bridge);
  reply.set_network(subnet->vnet_id.empty() ? subnet->id : subnet->vnet_id);
  const auto& dns = request.dns_config();
  if (dns.name_servers_size() > 0) {
    for (const auto& ns : dns.name_servers()) reply.add_name_servers(ns);
  } else if (options_.in_network_dns) {
    reply.add_name_servers(FormatIpv4(GatewayOf(subnet->prefix)));
  }
  for (const auto& domain : Words(dns.search_domains())) reply.add_search_domains(domain);
  if (options_.in_network_dns && dns.name_servers_size() == 0) reply.add_search_domains(options_.internal_domain);
  for (const auto& option : Words(dns.options())) reply.add_options(option);
  return reply;
}

std::optional<std::string> HostNetwork::Undo(const Attachment& attachment) {
  auto outcome = cni_.Del(attachment.conflist, attachment.result, attachment.container_id, attachment.netns_path,
                          options_.cni_ifname);
  // A namespace that is gone took its interface with it; what remains (rules) DEL removed.
  if (!outcome.ok && plumbing_.NamespaceExists(attachment.netns_path)) return "CNI DEL failed: " + outcome.error;
  store_.DeleteAttachment(attachment.group_id, attachment.netns_path);
  if (attachment.complete) DropUserLocked(attachment);
  return std::nullopt;
}

void HostNetwork::LoadBridgesLocked() {
  if (loaded_) return;
  bridges_.clear();
  bridge_users_.clear();
  auto attachments = store_.Attachments(options_.agent);
  store_.InTransaction([&](NetworkTx& tx) {
    std::map<std::string, std::optional<SubnetRow>> subnets;
    for (const auto& a : attachments) {
      if (!a.complete) continue;
      auto& subnet = subnets[a.subnet_id];
      if (!subnet) subnet = tx.FindSubnet(a.subnet_id);
      HostBridge bridge{a.bridge, subnet ? subnet->Domain() : a.subnet_id, subnet ? GatewayOf(subnet->prefix) : 0,
                        subnet ? subnet->prefix : Ipv4Prefix{}};
      bridges_[a.bridge] = bridge;
      ++bridge_users_[a.bridge];
    }
  });
  loaded_ = true;
}

void HostNetwork::AddUserLocked(const Attachment& attachment, const HostBridge& bridge) {
  bridges_[attachment.bridge] = bridge;
  ++bridge_users_[attachment.bridge];
}

void HostNetwork::DropUserLocked(const Attachment& attachment) {
  auto it = bridge_users_.find(attachment.bridge);
  if (it == bridge_users_.end()) return;
  if (--it->second > 0) return;
  bridge_users_.erase(it);
  bridges_.erase(attachment.bridge);
  plumbing_.DeleteBridge(attachment.bridge);  // its last group on this host left
}

v1::DetachReply HostNetwork::Detach(const v1::DetachRequest& request) {
  v1::DetachReply reply;
  std::lock_guard lock(mutex_);
  LoadBridgesLocked();
  for (const auto& existing : store_.GroupAttachments(options_.agent, request.group_id())) {
    if (!request.netns_path().empty() && existing.netns_path != request.netns_path()) continue;
    if (auto error = Undo(existing)) {
      reply.set_error_message(*error);
      return reply;
    }
  }
  if (auto error = SyncLocked()) {
    reply.set_error_message("isolation rules: " + *error);
    return reply;
  }
  reply.set_ok(true);
  return reply;
}

std::vector<HostBridge> HostNetwork::Bridges() {
  std::lock_guard lock(mutex_);
  LoadBridgesLocked();
  std::vector<HostBridge> list;
  for (const auto& [name, bridge] : bridges_) list.push_back(bridge);
  return list;
}

// Bridges of this installation's subnets (another installation on the host keeps its own).
std::set<std::string> HostNetwork::KnownBridges() {
  std::set<std::string> names;
  store_.InTransaction([&](NetworkTx& tx) {
    for (const auto& subnet : tx.AllSubnets()) names.insert(subnet.bridge);
  });
  return names;
}

std::optional<std::string> HostNetwork::SyncLocked(bool force) {
  std::vector<HostBridge> current;
  for (const auto& [name, bridge] : bridges_) current.push_back(bridge);
  const bool same = synced_once_ && current.size() == synced_.size() &&
                    std::equal(current.begin(), current.end(), synced_.begin(), [](const HostBridge& a, const HostBridge& b) {
                      return a.name == b.name && a.domain == b.domain;
                    });
  if (same && !force) return std::nullopt;  // the rules already say exactly this
  if (auto error = plumbing_.SyncIsolation(current)) return error;
  synced_ = current;
  synced_once_ = true;
  return std::nullopt;
}

HostNetwork::ReconcileStats HostNetwork::Reconcile() {
  ReconcileStats stats;
  std::lock_guard lock(mutex_);
  loaded_ = false;
  LoadBridgesLocked();
  for (const auto& attachment : store_.Attachments(options_.agent)) {
    if (attachment.complete && plumbing_.NamespaceExists(attachment.netns_path)) continue;
    if (!Undo(attachment)) ++stats.attachments_removed;
  }
  auto known = KnownBridges();
  for (const auto& name : plumbing_.ListBridges()) {
    if (!bridges_.count(name) && known.count(name)) {
      plumbing_.DeleteBridge(name);
      ++stats.bridges_removed;
    }
  }
  SyncLocked(true);
  return stats;
}

}  // namespace skiff::network
