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

std::optional<billing::v1::CostReply> NatsBillingLink::Costs(const billing::v1::CostRequest& request) {
  auto reply = bus_.Request("skiff.billing.costs", request.SerializeAsString(), timeout_);
  billing::v1::CostReply costs;
  if (!reply || !costs.ParseFromString(*reply)) return std::nullopt;
  return costs;
}

}  // namespace skiff::gateway
