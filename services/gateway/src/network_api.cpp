// The gateway's side of networking: virtual networks are answered by the network service
// (the gateway authenticates and routes), and every group claims its addresses and DNS name
// label before it is stored, so a PUT that cannot have them fails at once, as in ACI.
#include <spdlog/spdlog.h>

#include "skiff/gateway/group_api.h"

namespace skiff::gateway {

namespace ci = containerinstance::v1;

HttpResponse GroupApi::VirtualNetworks(const HttpRequest& request, const Route& route) {
  if (!route.resource_group.empty() && !IsValidResourceGroupName(route.resource_group)) {
    return ErrorResponse({ErrorKind::kInvalidResourceGroupName,
                          "The resource group name '" + route.resource_group + "' is invalid.", ""});
  }
  if (!network_) {
    return ErrorResponse({ErrorKind::kNetworkUnavailable, "Virtual networks need the network service, which this "
                          "gateway is not connected to.", ""});
  }
  network::v1::VnetApiRequest forward;
  forward.set_method(route.method);
  forward.set_subscription_id(route.subscription_id);
  forward.set_resource_group(route.resource_group);
  forward.set_name(route.name);
  forward.set_subnet(route.subnet);
  forward.set_body(request.body);
  auto reply = network_->Vnets(forward);
  if (!reply) {
    return ErrorResponse({ErrorKind::kNetworkUnavailable, "The network service did not answer; retry later.", ""});
  }
  HttpResponse response;
  response.status = reply->status();
  response.body = reply->body();
  if (!response.body.empty()) response.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
  return response;
}

std::optional<HttpResponse> GroupApi::ClaimNetwork(const Route& route, const std::string& group_id,
                                                   ci::ContainerGroup& group) {
  if (!network_) return std::nullopt;
  auto* props = group.mutable_properties();
  network::v1::ClaimRequest claim;
  claim.mutable_group()->set_subscription_id(route.subscription_id);
  claim.mutable_group()->set_resource_group(route.resource_group);
  claim.mutable_group()->set_name(route.name);
  claim.mutable_group()->set_group_id(group_id);
  claim.set_location(group.location());
  if (props->has_ip_address()) *claim.mutable_ip_address() = props->ip_address();
  for (const auto& subnet : props->subnet_ids()) claim.add_subnet_ids(subnet.id());
  auto reply = network_->Claim(claim);
  if (!reply) {
    return ErrorResponse({ErrorKind::kNetworkUnavailable,
                          "The network service did not answer, so the group's address could not be reserved; retry later.",
                          ""});
  }
  if (!reply->ok()) return RelayedErrorResponse(reply->http_status(), reply->error_code(), reply->error_message());
  if (props->has_ip_address()) {
    auto* ip = props->mutable_ip_address();
    ip->set_ip(ip->type() == "Public" ? reply->public_ip() : reply->private_ip());
    if (!reply->fqdn().empty()) ip->set_fqdn(reply->fqdn());
  } else if (props->subnet_ids_size() > 0) {
    // ACI shows a virtual-network group's private address even when it published no ports.
    props->mutable_ip_address()->set_type("Private");
    props->mutable_ip_address()->set_ip(reply->private_ip());
  }
  return std::nullopt;
}

}  // namespace skiff::gateway
