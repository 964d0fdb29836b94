#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>

#include "skiff/imagecache/http_client.h"
#include "skiff/imagecache/pull_error.h"
#include "skiff/oci/image_reference.h"

namespace skiff::imagecache {

struct Challenge {
  std::string scheme;  // Bearer | Basic (as sent)
  std::map<std::string, std::string> params;  // realm, service, scope, ...
};

// Parses one WWW-Authenticate header value: `Bearer realm="…",service="…",scope="…"`.
std::optional<Challenge> ParseChallenge(const std::string& header);

struct Credential {
  std::string username;
  std::string password;
};

struct FetchedManifest {
  std::string media_type;
  std::string body;
  std::string digest;  // sha256 of the body as served
};

struct RegistryClientOptions {
  // Registries reached over plain HTTP besides loopback ones (host[:port]).
  std::set<std::string> insecure_registries;
  int max_redirects = 5;
  int blob_attempts = 4;  // a broken download resumes with Range this many times
};

// The OCI distribution API, pull side: manifests and blobs, with bearer-token and basic
// authentication, redirects, resumable blob downloads and digest checks.
class RegistryClient {
 public:
  RegistryClient(HttpClient& http, RegistryClientOptions options) : http_(http), options_(std::move(options)) {}

  PullResult<FetchedManifest> GetManifest(const oci::ImageReference& ref, const std::string& reference,
                                          const Credential* credential);

  // Streams the blob to `sink` from byte `offset` on (used to resume), retrying broken transfers
  // with Range requests. `sink` gets only bytes in order; the caller checks the digest.
  // `restart` is called when the registry ignores Range, so the caller must start over.
  std::optional<PullError> FetchBlob(const oci::ImageReference& ref, const std::string& digest, int64_t size,
                                     const Credential* credential, const std::function<bool(const char*, size_t)>& sink,
                                     const std::function<void()>& restart);

  static constexpr const char* kManifestAccept =
      "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
      "application/vnd.docker.distribution.manifest.list.v2+json, "
      "application/vnd.docker.distribution.manifest.v2+json";

 private:
  // GET with auth and redirects; returns the final answer.
  HttpResult Send(const oci::ImageReference& ref, const std::string& path,
                  std::vector<std::pair<std::string, std::string>> headers, const Credential* credential,
                  const BodySink* sink, std::optional<PullError>* error);
  std::optional<PullError> Authenticate(const oci::ImageReference& ref, const HttpResult& challenge_response,
                                        const Credential* credential);
  std::string BaseUrl(const oci::ImageReference& ref) const;
  std::string AuthHeader(const oci::ImageReference& ref);

  HttpClient& http_;
  RegistryClientOptions options_;
  std::mutex auth_mutex_;
  std::map<std::string, std::string> auth_by_repository_;  // registry/repository -> Authorization value
};

PullError ErrorForStatus(int status, const std::string& what, const std::string& transport_error);

}  // namespace skiff::imagecache
