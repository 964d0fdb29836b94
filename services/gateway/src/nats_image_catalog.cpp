#include "skiff/gateway/nats_image_catalog.h"

#include "skiff/bus/nats_bus.h"
#include "skiff/imagecache/v1/imagecache.pb.h"

namespace skiff::gateway {

std::optional<std::vector<ImageCatalog::Entry>> NatsImageCatalog::CachedImages() {
  imagecache::v1::ListImagesRequest request;
  auto reply = bus_.Request("skiff.imagecache.list", request.SerializeAsString(), timeout_);
  imagecache::v1::ListImagesReply listed;
  if (!reply || !listed.ParseFromString(*reply)) return std::nullopt;
  std::vector<Entry> entries;
  for (const auto& image : listed.images()) entries.push_back({image.reference(), image.os_type()});
  return entries;
}

namespace {

// One request and its parsed answer; nullopt when nobody answered or the answer is not a Reply.
template <typename Reply>
std::optional<Reply> Ask(bus::NatsBus& bus, const std::string& subject, const google::protobuf::Message& request,
                         std::chrono::milliseconds timeout) {
  auto answer = bus.Request(subject, request.SerializeAsString(), timeout);
  Reply reply;
  if (!answer || answer->empty() || !reply.ParseFromString(*answer)) return std::nullopt;
  return reply;
}

}  // namespace

std::optional<billing::v1::CostReply> NatsBillingLink::Costs(const billing::v1::CostRequest& request) {
  return Ask<billing::v1::CostReply>(bus_, "skiff.billing.costs", request, timeout_);
}

std::optional<network::v1::ClaimReply> NatsNetworkLink::Claim(const network::v1::ClaimRequest& request) {
  return Ask<network::v1::ClaimReply>(bus_, "skiff.network.claim", request, timeout_);
}

std::optional<network::v1::VnetApiReply> NatsNetworkLink::Vnets(const network::v1::VnetApiRequest& request) {
  return Ask<network::v1::VnetApiReply>(bus_, "skiff.network.vnets", request, timeout_);
}

std::optional<network::v1::ResolveReply> NatsNetworkLink::Resolve(const std::string& fqdn) {
  network::v1::ResolveRequest request;
  request.set_fqdn(fqdn);
  return Ask<network::v1::ResolveReply>(bus_, "skiff.network.resolve", request, timeout_);
}

}  // namespace skiff::gateway
