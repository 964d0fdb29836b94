#pragma once

#include "skiff/gateway/network_link.h"

#include <chrono>

#include "skiff/gateway/group_api.h"

namespace skiff::bus {
class NatsBus;
}

namespace skiff::gateway {

// ImageCatalog over NATS: asks any imagecache (subject skiff.imagecache.list).
class NatsImageCatalog : public ImageCatalog {
 public:
  NatsImageCatalog(bus::NatsBus& bus, std::chrono::milliseconds timeout) : bus_(bus), timeout_(timeout) {}
  std::optional<std::vector<Entry>> CachedImages() override;

 private:
  bus::NatsBus& bus_;
  std::chrono::milliseconds timeout_;
};

// BillingLink over NATS: asks the billing service (subject skiff.billing.costs).
class NatsBillingLink : public BillingLink {
 public:
  NatsBillingLink(bus::NatsBus& bus, std::chrono::milliseconds timeout) : bus_(bus), timeout_(timeout) {}
  std::optional<billing::v1::CostReply> Costs(const billing::v1::CostRequest& request) override;

 private:
  bus::NatsBus& bus_;
  std::chrono::milliseconds timeout_;
};

// NetworkLink over NATS (skiff.network.claim, .vnets, .resolve; any network service answers).
class NatsNetworkLink : public NetworkLink {
 public:
  NatsNetworkLink(bus::NatsBus& bus, std::chrono::milliseconds timeout) : bus_(bus), timeout_(timeout) {}
  std::optional<network::v1::ClaimReply> Claim(const network::v1::ClaimRequest& request) override;
  std::optional<network::v1::VnetApiReply> Vnets(const network::v1::VnetApiRequest& request) override;
  std::optional<network::v1::ResolveReply> Resolve(const std::string& fqdn) override;

 private:
  bus::NatsBus& bus_;
  std::chrono::milliseconds timeout_;
};

}  // namespace skiff::gateway
