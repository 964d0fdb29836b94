#include "skiff/imagecache/manifest.h"

#include <google/protobuf/util/json_util.h>

#include <set>

namespace skiff::imagecache {
namespace {

template <typename Message>
PullResult<Message> ParseJson(const std::string& body, const char* what) {
  Message message;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(body, &message, options);
  if (!status.ok()) {
    return PullError{"UnsupportedManifest", std::string("The image's ") + what + " is not valid JSON: " +
                                                std::string(status.message())};
  }
  return message;
}

}  // namespace

DocumentKind KindOf(const std::string& content_type, const std::string& body) {
  static const std::set<std::string> kManifests{"application/vnd.oci.image.manifest.v1+json",
                                                "application/vnd.docker.distribution.manifest.v2+json"};
  static const std::set<std::string> kIndexes{"application/vnd.oci.image.index.v1+json",
                                              "application/vnd.docker.distribution.manifest.list.v2+json"};
  if (kManifests.count(content_type)) return DocumentKind::kManifest;
  if (kIndexes.count(content_type)) return DocumentKind::kIndex;
  // Content-Type missing or generic: look at the document.
  google::protobuf::Struct doc;
  google::protobuf::util::JsonParseOptions options;
  if (!google::protobuf::util::JsonStringToMessage(body, &doc, options).ok()) return DocumentKind::kUnsupported;
  const auto& fields = doc.fields();
  if (fields.count("mediaType")) {
    const std::string& type = fields.at("mediaType").string_value();
    if (kManifests.count(type)) return DocumentKind::kManifest;
    if (kIndexes.count(type)) return DocumentKind::kIndex;
  }
  if (fields.count("manifests")) return DocumentKind::kIndex;
  if (fields.count("layers") && fields.count("config")) return DocumentKind::kManifest;
  return DocumentKind::kUnsupported;
}

PullResult<v1::Manifest> ParseManifest(const std::string& body) { return ParseJson<v1::Manifest>(body, "manifest"); }
PullResult<v1::Index> ParseIndex(const std::string& body) { return ParseJson<v1::Index>(body, "image index"); }
PullResult<v1::ImageConfig> ParseImageConfig(const std::string& body) {
  return ParseJson<v1::ImageConfig>(body, "configuration");
}

std::optional<v1::Descriptor> SelectPlatform(const v1::Index& index, const std::string& os, const std::string& arch) {
  for (const auto& descriptor : index.manifests()) {
    if (descriptor.platform().os() == os && descriptor.platform().architecture() == arch) return descriptor;
  }
  return std::nullopt;
}

bool IsSupportedLayerType(const std::string& media_type) {
  static const std::set<std::string> kLayers{
      "application/vnd.oci.image.layer.v1.tar",         "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",    "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.diff.tar",   "application/vnd.docker.image.rootfs.diff.tar.zstd"};
  return kLayers.count(media_type) > 0;
}

}  // namespace skiff::imagecache
