#pragma once

#include <optional>
#include <string>

#include "skiff/network/v1/network.pb.h"

namespace skiff::gateway {

// The network service, as the gateway needs it: claims for groups (address, public address,
// DNS name label) before they are stored, the virtual-network API, and fqdn lookups for the
// ingress. nullopt: the network service did not answer in time.
class NetworkLink {
 public:
  virtual ~NetworkLink() = default;
  virtual std::optional<network::v1::ClaimReply> Claim(const network::v1::ClaimRequest& request) = 0;
  virtual std::optional<network::v1::VnetApiReply> Vnets(const network::v1::VnetApiRequest& request) = 0;
  virtual std::optional<network::v1::ResolveReply> Resolve(const std::string& fqdn) = 0;
};

}  // namespace skiff::gateway
