#pragma once

#include <optional>
#include <string>

namespace skiff::oci {

// An image name as users write it for ACI and Docker, normalised:
//   nginx                      -> docker.io/library/nginx:latest
//   127.0.0.1:5000/a/b@sha256:… -> registry 127.0.0.1:5000, repository a/b, digest
struct ImageReference {
  std::string registry;    // host[:port]; "docker.io" for Docker Hub
  std::string repository;  // path, e.g. library/nginx
  std::string tag;         // empty when only a digest was given
  std::string digest;      // sha256:<64 hex> or empty

  // registry/repository[:tag][@digest]
  std::string String() const;
  // What to ask the registry for: the digest when there is one, else the tag.
  std::string ManifestReference() const { return digest.empty() ? tag : digest; }
  // The host serving the distribution API (Docker Hub's API lives on registry-1.docker.io).
  std::string ApiHost() const;
  bool IsLoopbackRegistry() const;
};

// Grammar of github.com/distribution/reference. The first component is a registry host only
// when it has a '.' or ':' or is "localhost". nullopt when the text is not a valid reference.
std::optional<ImageReference> ParseImageReference(const std::string& text);

}  // namespace skiff::oci
