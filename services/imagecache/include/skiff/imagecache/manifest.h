#pragma once

#include <optional>
#include <string>

#include "skiff/imagecache/pull_error.h"
#include "skiff/imagecache/v1/oci.pb.h"

namespace skiff::imagecache {

enum class DocumentKind { kManifest, kIndex, kUnsupported };

// Media types as registries send them; when Content-Type is missing or generic, the document's
// own mediaType (or the presence of "manifests") decides.
DocumentKind KindOf(const std::string& content_type, const std::string& body);
PullResult<v1::Manifest> ParseManifest(const std::string& body);
PullResult<v1::Index> ParseIndex(const std::string& body);
PullResult<v1::ImageConfig> ParseImageConfig(const std::string& body);
// The manifest for os/architecture (variant ignored for amd64); nullopt when none matches.
std::optional<v1::Descriptor> SelectPlatform(const v1::Index& index, const std::string& os, const std::string& arch);
// tar, tar+gzip, tar+zstd in OCI and Docker spellings; foreign/non-distributable layers are not.
bool IsSupportedLayerType(const std::string& media_type);

}  // namespace skiff::imagecache
