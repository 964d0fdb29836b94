#pragma once

#include <functional>
#include <string>

#include "skiff/network/cidr.h"
#include "skiff/network/network_store.h"
#include "skiff/network/v1/network.pb.h"

namespace skiff::network {

struct RegistryOptions {
  // Where each subscription's default network is carved from, one prefix of `default_length`
  // per subscription.
  Ipv4Prefix default_pool{0x0AF00000, 12};  // 10.240.0.0/12
  int default_length = 22;
  // Public addresses: one per Public group (in the local stack a loopback range, all of which
  // reaches this host).
  Ipv4Prefix public_pool{0x7F640000, 16};   // 127.100.0.0/16
  std::string dns_zone = "skiff.test";
  // A claim whose group the gateway never stored (its PUT failed after the claim) is let go.
  Millis unconfirmed_ttl = 10 * 60 * 1000;
};

// The network's global state, behind the store: virtual networks (the ARM API), and each
// group's claim on an address, a public address, a DNS name label and its published ports.
class Registry {
 public:
  Registry(NetworkStore& store, RegistryOptions options, std::function<Millis()> now);

  v1::VnetApiReply Vnets(const v1::VnetApiRequest& request);
  v1::ClaimReply Claim(const v1::ClaimRequest& request);
  // The group was deleted: its addresses, label and ports are free again.
  void Release(const std::string& group_id);
  // The gateway stored the group (its created/updated event).
  void Confirm(const std::string& group_id);
  // Lets go of claims never confirmed; returns how many.
  int SweepUnconfirmed();

  const RegistryOptions& options() const { return options_; }
  // The bridge name a subnet gets on every host ("skb" + 12 hex digits: within IFNAMSIZ).
  static std::string BridgeName(const std::string& subnet_id);
  // The label a group holds for a requested label and reuse scope (ACI appends a hash of the
  // scope for every scope but Unsecure).
  static std::string HeldLabel(const std::string& label, const std::string& scope, const v1::ClaimRequest& request);

 private:
  v1::VnetApiReply PutVnet(const v1::VnetApiRequest& request);
  SubnetRow DefaultSubnet(NetworkTx& tx, const std::string& subscription_id);

  NetworkStore& store_;
  RegistryOptions options_;
  std::function<Millis()> now_;
};

// ARM's error envelope.
std::string ArmErrorJson(const std::string& code, const std::string& message);

}  // namespace skiff::network
