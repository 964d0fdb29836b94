#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "skiff/network/cidr.h"
#include "skiff/network/v1/network.pb.h"

namespace skiff::network {

using Millis = int64_t;

// A subnet: of a user's virtual network, or a subscription's default network (vnet_id empty).
struct SubnetRow {
  std::string id;               // ARM id in lower case, or "default/<subscription>"
  std::string vnet_id;          // ARM id of its virtual network, lower case; empty for a default
  std::string subscription_id;
  std::string name;
  Ipv4Prefix prefix;
  std::string bridge;           // the host bridge every node makes for it
  // Groups on one isolation domain reach each other: the virtual network, or the default network.
  std::string Domain() const { return vnet_id.empty() ? id : vnet_id; }
};

struct VnetRow {
  std::string id;               // lower-case ARM id
  std::string subscription_id;
  std::string resource_group;
  std::string name;
  v1::VirtualNetwork resource;  // as the user wrote it, with the server's fields filled in
  std::vector<SubnetRow> subnets;
};

// What a group holds in the network; lives from the group's first PUT to its delete, so its
// addresses survive restart, stop/start and re-placement.
struct GroupClaim {
  std::string group_id;
  std::string subscription_id;
  std::string resource_group;
  std::string name;
  std::string location;
  std::string subnet_id;
  uint32_t private_ip = 0;
  std::optional<uint32_t> public_ip;
  std::string dns_label;        // the label as held (empty: none)
  std::vector<v1::PublishedPort> ports;
  bool confirmed = false;       // the gateway stored the group (its event arrived)
  Millis claimed_at = 0;
};

// A group's namespace joined to a bridge on one host. Written before CNI ADD runs, so a crash
// in between leaves a row that start-up reconcile undoes.
struct Attachment {
  std::string group_id;
  std::string netns_path;
  std::string agent;
  std::string node_id;
  std::string container_id;     // CNI's
  std::string subnet_id;
  std::string bridge;
  std::string conflist;         // the exact configuration ADD ran with; DEL runs with it too
  std::string result;           // ADD's result (DEL hands it to the plugins as prevResult)
  int64_t placement_generation = 0;
  bool complete = false;        // ADD succeeded
};

// One transaction's view of the network state. Allocations take a store-wide lock first, so
// two network services never hand out one address or label twice.
class NetworkTx {
 public:
  virtual ~NetworkTx() = default;
  virtual void LockAllocations() = 0;
  virtual std::optional<VnetRow> FindVnet(const std::string& vnet_id) = 0;
  virtual std::vector<VnetRow> ListVnets(const std::string& subscription_id, const std::string& resource_group) = 0;
  virtual void SaveVnet(const VnetRow& vnet) = 0;  // replaces its subnets
  virtual void DeleteVnet(const std::string& vnet_id) = 0;
  virtual std::vector<SubnetRow> AllSubnets() = 0;
  virtual std::optional<SubnetRow> FindSubnet(const std::string& subnet_id) = 0;
  virtual void SaveSubnet(const SubnetRow& subnet) = 0;  // default networks
  virtual int64_t ClaimsInSubnet(const std::string& subnet_id) = 0;
  virtual std::optional<GroupClaim> FindClaim(const std::string& group_id) = 0;
  virtual std::set<uint32_t> PrivateAddressesInUse(const std::string& subnet_id) = 0;
  virtual std::set<uint32_t> PublicAddressesInUse() = 0;
  virtual std::optional<GroupClaim> LabelHolder(const std::string& location, const std::string& label) = 0;
  virtual void SaveClaim(const GroupClaim& claim) = 0;
  virtual void DeleteClaim(const std::string& group_id) = 0;
  virtual std::vector<std::string> StaleUnconfirmedClaims(Millis claimed_before) = 0;
};

class NetworkStore {
 public:
  virtual ~NetworkStore() = default;
  virtual void InTransaction(const std::function<void(NetworkTx&)>& body) = 0;
  // Reads for DNS and ingress, outside any allocation.
  virtual std::vector<std::pair<GroupClaim, SubnetRow>> AllClaims() = 0;
  // The host's attachments (one network service per host owns them).
  virtual std::vector<Attachment> Attachments(const std::string& agent) = 0;
  virtual std::vector<Attachment> GroupAttachments(const std::string& agent, const std::string& group_id) = 0;
  virtual void SaveAttachment(const Attachment& attachment) = 0;
  virtual void DeleteAttachment(const std::string& group_id, const std::string& netns_path) = 0;
};

}  // namespace skiff::network
