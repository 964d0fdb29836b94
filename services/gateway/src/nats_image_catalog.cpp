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

}  // namespace skiff::gateway
