#include "skiff/network/registry.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <stdexcept>

#include "skiff/crypto/crypto.h"

namespace skiff::network {

namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

v1::VnetApiReply Reply(int status, std::string body) {
  v1::VnetApiReply reply;
  reply.set_status(status);
  reply.set_body(std::move(body));
  return reply;
}

v1::VnetApiReply ErrorReply(int status, const std::string& code, const std::string& message) {
  return Reply(status, ArmErrorJson(code, message));
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = false;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::string VnetId(const std::string& subscription, const std::string& resource_group, const std::string& name) {
  return "/subscriptions/" + subscription + "/resourceGroups/" + resource_group +
         "/providers/Microsoft.Network/virtualNetworks/" + name;
}

bool IsValidNetworkName(const std::string& name) {
  if (name.empty() || name.size() > 80) return false;
  if (!std::isalnum(static_cast<unsigned char>(name.front()))) return false;
  if (!std::isalnum(static_cast<unsigned char>(name.back())) && name.back() != '_') return false;
  return std::all_of(name.begin(), name.end(),
                     [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.'; });
}

// /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{v}/subnets/{n}
struct SubnetRef {
  std::string subscription_id, vnet_id, subnet_id;
};
std::optional<SubnetRef> ParseSubnetId(const std::string& id) {
  std::vector<std::string> parts;
  size_t start = 0;
  if (id.empty() || id[0] != '/') return std::nullopt;
  while (start <= id.size()) {
    size_t slash = id.find('/', start + 1);
    if (slash == std::string::npos) slash = id.size();
    parts.push_back(id.substr(start + 1, slash - start - 1));
    start = slash;
    if (slash == id.size()) break;
  }
  if (parts.size() != 10) return std::nullopt;
  if (Lower(parts[0]) != "subscriptions" || Lower(parts[2]) != "resourcegroups" || Lower(parts[4]) != "providers" ||
      Lower(parts[5]) != "microsoft.network" || Lower(parts[6]) != "virtualnetworks" || Lower(parts[8]) != "subnets") {
    return std::nullopt;
  }
  for (const auto& part : parts) {
    if (part.empty()) return std::nullopt;
  }
  SubnetRef ref;
  ref.subscription_id = Lower(parts[1]);
  ref.vnet_id = Lower(VnetId(parts[1], parts[3], parts[7]));
  ref.subnet_id = Lower(id);
  return ref;
}

v1::ClaimReply Refuse(int status, const std::string& code, const std::string& message) {
  v1::ClaimReply reply;
  reply.set_ok(false);
  reply.set_http_status(status);
  reply.set_error_code(code);
  reply.set_error_message(message);
  return reply;
}

}  // namespace

std::string ArmErrorJson(const std::string& code, const std::string& message) {
  containerinstance::v1::ErrorResponse error;
  error.mutable_error()->set_code(code);
  error.mutable_error()->set_message(message);
  return ToJson(error);
}

Registry::Registry(NetworkStore& store, RegistryOptions options, std::function<Millis()> now)
    : store_(store), options_(std::move(options)), now_(std::move(now)) {}

std::string Registry::BridgeName(const std::string& subnet_id) { return "skb" + crypto::Sha256Hex(subnet_id).substr(0, 12); }

std::string Registry::HeldLabel(const std::string& label, const std::string& scope, const v1::ClaimRequest& request) {
  if (label.empty() || scope.empty() || scope == "Unsecure") return label;
  const auto& group = request.group();
  std::string key;
  if (scope == "TenantReuse") key = "tenant/" + (request.tenant_id().empty() ? group.subscription_id() : request.tenant_id());
  else if (scope == "SubscriptionReuse") key = "subscription/" + Lower(group.subscription_id());
  else if (scope == "ResourceGroupReuse") key = "rg/" + Lower(group.subscription_id()) + "/" + Lower(group.resource_group());
  else key = "group/" + group.group_id();  // Noreuse: a new group never gets an old one's name
  // The hashed form must still be a valid DNS label (<= 63): label, '-', 10 hex digits.
  return label.substr(0, 52) + "-" + crypto::Sha256Hex(key + "/" + label).substr(0, 10);
}

v1::VnetApiReply Registry::Vnets(const v1::VnetApiRequest& request) {
  const std::string subscription = Lower(request.subscription_id());
  if (request.method() == "PUT") return PutVnet(request);
  v1::VnetApiReply reply;
  store_.InTransaction([&](NetworkTx& tx) {
    if (request.name().empty()) {
      if (request.method() != "GET") {
        reply = ErrorReply(405, "MethodNotAllowed", "Only GET lists virtual networks.");
        return;
      }
      v1::VirtualNetworkListResult list;
      for (auto& vnet : tx.ListVnets(subscription, Lower(request.resource_group()))) *list.add_value() = vnet.resource;
      reply = Reply(200, ToJson(list));
      return;
    }
    const std::string id = Lower(VnetId(subscription, request.resource_group(), request.name()));
    auto vnet = tx.FindVnet(id);
    if (request.method() == "GET") {
      if (!vnet) {
        reply = ErrorReply(404, "ResourceNotFound",
                           "The Resource 'Microsoft.Network/virtualNetworks/" + request.name() + "' under resource group '" +
                               request.resource_group() + "' was not found.");
        return;
      }
      if (!request.subnet().empty()) {
        for (const auto& subnet : vnet->resource.properties().subnets()) {
          if (Lower(subnet.name()) == Lower(request.subnet())) {
            reply = Reply(200, ToJson(subnet));
            return;
          }
        }
        reply = ErrorReply(404, "NotFound", "The subnet '" + request.subnet() + "' is not in the virtual network '" +
                                                request.name() + "'.");
        return;
      }
      reply = Reply(200, ToJson(vnet->resource));
      return;
    }
    if (request.method() == "DELETE") {
      if (!vnet) {
        reply = Reply(204, "");
        return;
      }
      tx.LockAllocations();
      for (const auto& subnet : vnet->subnets) {
        if (tx.ClaimsInSubnet(subnet.id) > 0) {
          reply = ErrorReply(409, "InUseSubnetCannotBeDeleted",
                             "Subnet " + subnet.name + " is in use by " + std::to_string(tx.ClaimsInSubnet(subnet.id)) +
                                 " container group(s) and cannot be deleted. Delete them first.");
          return;
        }
      }
      tx.DeleteVnet(id);
      reply = Reply(200, "");
      return;
    }
    reply = ErrorReply(405, "MethodNotAllowed", "The method " + request.method() + " is not allowed here.");
  });
  return reply;
}

v1::VnetApiReply Registry::PutVnet(const v1::VnetApiRequest& request) {
  const std::string subscription = Lower(request.subscription_id());
  if (!IsValidNetworkName(request.name())) {
    return ErrorReply(400, "InvalidResourceName",
                      "The virtual network name '" + request.name() +
                          "' is invalid: use 1-80 letters, digits, '-', '_' and '.', starting with a letter or digit.");
  }
  v1::VirtualNetwork vnet;
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;
  if (request.body().empty() || !google::protobuf::util::JsonStringToMessage(request.body(), &vnet, parse).ok()) {
    return ErrorReply(400, "InvalidRequestContent", "The request body is not a valid virtual network.");
  }
  if (vnet.location().empty()) return ErrorReply(400, "LocationRequired", "The location property is required.");
  std::vector<Ipv4Prefix> spaces;
  for (const auto& text : vnet.properties().address_space().address_prefixes()) {
    auto prefix = Ipv4Prefix::Parse(text);
    if (!prefix || prefix->length < 8 || prefix->length > 29) {
      return ErrorReply(400, "InvalidAddressPrefixFormat",
                        "Address prefix '" + text + "' is not a valid IPv4 CIDR from /8 to /29 with its host bits zero.");
    }
    for (const auto& other : spaces) {
      if (other.Overlaps(*prefix)) {
        return ErrorReply(400, "NetcfgOverlappingAddressSpaces",
                          "Address prefixes " + other.ToString() + " and " + text + " of the virtual network overlap.");
      }
    }
    spaces.push_back(*prefix);
  }
  if (spaces.empty()) {
    return ErrorReply(400, "AddressSpaceRequired", "properties.addressSpace.addressPrefixes needs at least one prefix.");
  }
  const std::string id_cased = VnetId(request.subscription_id(), request.resource_group(), request.name());
  const std::string id = Lower(id_cased);
  VnetRow row;
  row.id = id;
  row.subscription_id = subscription;
  row.resource_group = Lower(request.resource_group());
  row.name = request.name();
  std::set<std::string> names;
  for (int i = 0; i < vnet.properties().subnets_size(); ++i) {
    auto* subnet = vnet.mutable_properties()->mutable_subnets(i);
    if (!IsValidNetworkName(subnet->name())) {
      return ErrorReply(400, "InvalidResourceName", "The subnet name '" + subnet->name() + "' is invalid.");
    }
    if (!names.insert(Lower(subnet->name())).second) {
      return ErrorReply(400, "DuplicateResourceName", "The subnet name '" + subnet->name() + "' is used twice.");
    }
    const std::string& text = subnet->properties().address_prefix();
    auto prefix = Ipv4Prefix::Parse(text);
    if (!prefix || prefix->length > 29) {
      return ErrorReply(400, "InvalidAddressPrefixFormat",
                        "Subnet '" + subnet->name() + "' has address prefix '" + text +
                            "', which is not a valid IPv4 CIDR of at most /29 with its host bits zero.");
    }
    if (std::none_of(spaces.begin(), spaces.end(), [&](const Ipv4Prefix& s) { return s.Contains(*prefix); })) {
      return ErrorReply(400, "NetcfgSubnetRangeOutsideVnet",
                        "Subnet '" + subnet->name() + "' (" + text + ") is not within the virtual network's address space.");
    }
    for (const auto& other : row.subnets) {
      if (other.prefix.Overlaps(*prefix)) {
        return ErrorReply(400, "NetcfgSubnetRangesOverlap",
                          "Subnets '" + other.name + "' and '" + subnet->name() + "' have overlapping address prefixes.");
      }
    }
    SubnetRow s;
    s.id = id + "/subnets/" + Lower(subnet->name());
    s.vnet_id = id;
    s.subscription_id = subscription;
    s.name = subnet->name();
    s.prefix = *prefix;
    s.bridge = BridgeName(s.id);
    row.subnets.push_back(s);
    subnet->set_id(id_cased + "/subnets/" + subnet->name());
    subnet->set_type("Microsoft.Network/virtualNetworks/subnets");
    subnet->mutable_properties()->set_provisioning_state("Succeeded");
  }
  vnet.set_id(id_cased);
  vnet.set_name(request.name());
  vnet.set_type("Microsoft.Network/virtualNetworks");
  vnet.mutable_properties()->set_provisioning_state("Succeeded");

  v1::VnetApiReply reply;
  store_.InTransaction([&](NetworkTx& tx) {
    tx.LockAllocations();
    auto existing = tx.FindVnet(id);
    // Every node routes every subnet it hosts, so subnets may not overlap anywhere in the
    // installation (not even across subscriptions), nor the default networks' pool.
    const auto installed = tx.AllSubnets();
    for (const auto& s : row.subnets) {
      if (s.prefix.Overlaps(options_.default_pool)) {
        reply = ErrorReply(400, "NetcfgSubnetRangesOverlap",
                           "Subnet '" + s.name + "' overlaps " + options_.default_pool.ToString() +
                               ", which this installation keeps for default networks.");
        return;
      }
      for (const auto& other : installed) {
        if (other.vnet_id == id) continue;
        if (other.prefix.Overlaps(s.prefix)) {
          reply = ErrorReply(409, "NetcfgSubnetRangesOverlap",
                             "Subnet '" + s.name + "' (" + s.prefix.ToString() + ") overlaps a subnet of another virtual "
                             "network on this installation (" + other.prefix.ToString() + "); Skiff routes all subnets "
                             "on shared hosts, so their ranges must be distinct.");
          return;
        }
      }
    }
    if (existing) {
      vnet.mutable_properties()->set_resource_guid(existing->resource.properties().resource_guid());
      for (const auto& old : existing->subnets) {
        auto kept = std::find_if(row.subnets.begin(), row.subnets.end(), [&](const SubnetRow& s) { return s.id == old.id; });
        const int64_t in_use = tx.ClaimsInSubnet(old.id);
        if (in_use == 0) continue;
        if (kept == row.subnets.end()) {
          reply = ErrorReply(409, "InUseSubnetCannotBeDeleted",
                             "Subnet " + old.name + " is in use by " + std::to_string(in_use) +
                                 " container group(s) and cannot be removed.");
          return;
        }
        if (!(kept->prefix == old.prefix)) {
          reply = ErrorReply(409, "InUseSubnetCannotBeUpdated",
                             "Subnet " + old.name + " is in use and its address prefix cannot change.");
          return;
        }
      }
    } else {
      vnet.mutable_properties()->set_resource_guid(crypto::NameUuid(id + "/" + std::to_string(now_())));
    }
    row.resource = vnet;
    tx.SaveVnet(row);
    reply = Reply(existing ? 200 : 201, ToJson(vnet));
  });
  return reply;
}

SubnetRow Registry::DefaultSubnet(NetworkTx& tx, const std::string& subscription_id) {
  const std::string id = "default/" + subscription_id;
  if (auto found = tx.FindSubnet(id)) return *found;
  std::set<uint32_t> taken;
  for (const auto& s : tx.AllSubnets()) {
    if (s.vnet_id.empty()) taken.insert(s.prefix.network);
  }
  const uint64_t slices = uint64_t{1} << (options_.default_length - options_.default_pool.length);
  const uint32_t step = uint32_t{1} << (32 - options_.default_length);
  for (uint64_t i = 0; i < slices; ++i) {
    uint32_t network = options_.default_pool.network + static_cast<uint32_t>(i) * step;
    if (taken.count(network)) continue;
    SubnetRow row;
    row.id = id;
    row.subscription_id = subscription_id;
    row.name = "default";
    row.prefix = {network, options_.default_length};
    row.bridge = BridgeName(id);
    tx.SaveSubnet(row);
    return row;
  }
  throw std::runtime_error("the default network pool " + options_.default_pool.ToString() + " is exhausted");
}

v1::ClaimReply Registry::Claim(const v1::ClaimRequest& request) {
  const auto& group = request.group();
  const std::string subscription = Lower(group.subscription_id());
  if (request.subnet_ids_size() > 1) {
    return Refuse(400, "InvalidSubnetIds", "A container group can be in one subnet only; " +
                                               std::to_string(request.subnet_ids_size()) + " were given.");
  }
  std::optional<SubnetRef> subnet_ref;
  if (request.subnet_ids_size() == 1) {
    subnet_ref = ParseSubnetId(request.subnet_ids(0));
    if (!subnet_ref) {
      return Refuse(400, "InvalidSubnetId",
                    "'" + request.subnet_ids(0) +
                        "' is not a subnet id (/subscriptions/…/providers/Microsoft.Network/virtualNetworks/…/subnets/…).");
    }
    if (subnet_ref->subscription_id != subscription) {
      return Refuse(403, "LinkedAuthorizationFailed",
                    "The subnet '" + request.subnet_ids(0) + "' belongs to another subscription; a container group can "
                    "only join subnets of its own subscription.");
    }
  }
  const bool wants_public = request.has_ip_address() && request.ip_address().type() == "Public";
  const std::string label = request.has_ip_address()
                                ? HeldLabel(request.ip_address().dns_name_label(),
                                            request.ip_address().auto_generated_domain_name_label_scope(), request)
                                : std::string();
  const std::string location = Lower(request.location());
  v1::ClaimReply reply;
  store_.InTransaction([&](NetworkTx& tx) {
    tx.LockAllocations();
    SubnetRow subnet;
    if (subnet_ref) {
      auto found = tx.FindSubnet(subnet_ref->subnet_id);
      if (!found) {
        reply = Refuse(400, "InvalidResourceReference",
                       "The subnet '" + request.subnet_ids(0) + "' does not exist. Create its virtual network first.");
        return;
      }
      subnet = *found;
    } else {
      subnet = DefaultSubnet(tx, subscription);
    }
    auto existing = tx.FindClaim(group.group_id());
    GroupClaim claim;
    claim.group_id = group.group_id();
    claim.subscription_id = subscription;
    claim.resource_group = Lower(group.resource_group());
    claim.name = group.name();
    claim.location = location;
    claim.subnet_id = subnet.id;
    claim.confirmed = existing && existing->confirmed;
    claim.claimed_at = existing ? existing->claimed_at : now_();
    if (existing && existing->subnet_id == subnet.id) {
      claim.private_ip = existing->private_ip;  // the address stays with the group
    } else {
      auto used = tx.PrivateAddressesInUse(subnet.id);
      for (uint32_t a = FirstUsable(subnet.prefix); a <= LastUsable(subnet.prefix); ++a) {
        if (!used.count(a)) {
          claim.private_ip = a;
          break;
        }
      }
      if (claim.private_ip == 0) {
        reply = Refuse(400, "SubnetIsFull",
                       "Subnet '" + subnet.name + "' (" + subnet.prefix.ToString() + ") has no free address left.");
        return;
      }
    }
    if (wants_public) {
      if (existing && existing->public_ip) {
        claim.public_ip = existing->public_ip;
      } else {
        auto used = tx.PublicAddressesInUse();
        for (uint32_t a = options_.public_pool.network + 1; a < options_.public_pool.Last(); ++a) {
          if (!used.count(a)) {
            claim.public_ip = a;
            break;
          }
        }
        if (!claim.public_ip) {
          reply = Refuse(409, "PublicIPCountLimitReached",
                         "No public address is left in " + options_.public_pool.ToString() + ".");
          return;
        }
      }
    }
    if (!label.empty()) {
      if (auto holder = tx.LabelHolder(location, label); holder && holder->group_id != group.group_id()) {
        reply = Refuse(409, "DnsNameLabelNotAvailable",
                       "The DNS name label '" + request.ip_address().dns_name_label() + "' is already used in " +
                           request.location() + " by another container group. Pick another label.");
        return;
      }
      claim.dns_label = label;
    }
    if (request.has_ip_address()) {
      for (const auto& port : request.ip_address().ports()) {
        v1::PublishedPort published;
        published.set_port(port.port());
        published.set_protocol(port.protocol().empty() ? "TCP" : port.protocol());
        claim.ports.push_back(published);
      }
    }
    tx.SaveClaim(claim);
    reply.set_ok(true);
    reply.set_private_ip(FormatIpv4(claim.private_ip));
    if (claim.public_ip) reply.set_public_ip(FormatIpv4(*claim.public_ip));
    if (!claim.dns_label.empty()) {
      reply.set_dns_name_label(claim.dns_label);
      reply.set_fqdn(claim.dns_label + "." + location + "." + options_.dns_zone);
    }
  });
  return reply;
}

void Registry::Release(const std::string& group_id) {
  store_.InTransaction([&](NetworkTx& tx) { tx.DeleteClaim(group_id); });
}

void Registry::Confirm(const std::string& group_id) {
  store_.InTransaction([&](NetworkTx& tx) {
    auto claim = tx.FindClaim(group_id);
    if (!claim || claim->confirmed) return;
    claim->confirmed = true;
    tx.SaveClaim(*claim);
  });
}

int Registry::SweepUnconfirmed() {
  int swept = 0;
  store_.InTransaction([&](NetworkTx& tx) {
    for (const auto& id : tx.StaleUnconfirmedClaims(now_() - options_.unconfirmed_ttl)) {
      tx.DeleteClaim(id);
      ++swept;
    }
  });
  return swept;
}

}  // namespace skiff::network
