#include "skiff/imagecache/registry_client.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "skiff/crypto/crypto.h"

namespace skiff::imagecache {

std::optional<Challenge> ParseChallenge(const std::string& header) {
  Challenge challenge;
  size_t space = header.find(' ');
  challenge.scheme = header.substr(0, space);
  if (challenge.scheme.empty()) return std::nullopt;
  size_t i = space == std::string::npos ? header.size() : space + 1;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
    size_t eq = header.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = header.substr(i, eq - i);
    i = eq + 1;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      ++i;
      while (i < header.size() && header[i] != '"') {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value += header[i++];
      }
      if (i >= header.size()) return std::nullopt;  // unterminated quote
      ++i;
    } else {
      size_t end = header.find(',', i);
      if (end == std::string::npos) end = header.size();
      value = header.substr(i, end - i);
      i = end;
    }
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    challenge.params[key] = value;
  }
  return challenge;
}

PullError ErrorForStatus(int status, const std::string& what, const std::string& transport_error) {
  if (status == 0) {
    return {"RegistryUnavailable", "Failed to reach the registry for " + what + ": " + transport_error + "."};
  }
  if (status == 401 || status == 403) {
    return {"RegistryUnauthorized", "The registry refused access to " + what +
                                        ": check the image name and the imageRegistryCredentials for its server."};
  }
  if (status == 404) {
    return {"ImageNotFound", "The image " + what + " was not found in its registry: check the repository and tag."};
  }
  if (status == 429) return {"RegistryThrottled", "The registry throttled pulls of " + what + "; retry later."};
  return {"RegistryUnavailable", "The registry answered HTTP " + std::to_string(status) + " for " + what + "."};
}

std::string RegistryClient::BaseUrl(const oci::ImageReference& ref) const {
  bool plain = ref.IsLoopbackRegistry() || options_.insecure_registries.count(ref.registry) > 0;
  return (plain ? "http://" : "https://") + ref.ApiHost();
}

std::string RegistryClient::AuthHeader(const oci::ImageReference& ref) {
  std::lock_guard lock(auth_mutex_);
  auto it = auth_by_repository_.find(ref.registry + "/" + ref.repository);
  return it == auth_by_repository_.end() ? std::string() : it->second;
}

std::optional<PullError> RegistryClient::Authenticate(const oci::ImageReference& ref, const HttpResult& response,
                                                      const Credential* credential) {
  auto challenge = ParseChallenge(response.Header("www-authenticate"));
  std::string what = ref.String();
  if (!challenge) return ErrorForStatus(401, what, "");
  std::string basic = credential ? "Basic " + crypto::Base64Encode(credential->username + ":" + credential->password) : "";
  std::string value;
  if (challenge->scheme == "Basic" || challenge->scheme == "basic") {
    if (!credential) return PullError{"RegistryUnauthorized", "The registry for " + what + " needs a user name and password in imageRegistryCredentials."};
    value = basic;
  } else if (challenge->scheme == "Bearer" || challenge->scheme == "bearer") {
    auto realm = Url::Parse(challenge->params["realm"]);
    if (!realm) return PullError{"RegistryUnauthorized", "The registry for " + what + " sent an unusable token realm."};
    std::string scope = challenge->params.count("scope") ? challenge->params["scope"] : "repository:" + ref.repository + ":pull";
    realm->target += (realm->target.find('?') == std::string::npos ? "?" : "&");
    realm->target += "service=" + challenge->params["service"] + "&scope=" + scope;
    std::vector<std::pair<std::string, std::string>> headers;
    if (credential) headers.emplace_back("Authorization", basic);
    HttpResult token_response = http_.Get(*realm, headers, nullptr);
    if (token_response.status != 200) return ErrorForStatus(token_response.status == 0 ? 0 : 401, what, token_response.error);
    google::protobuf::Struct token_doc;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    if (!google::protobuf::util::JsonStringToMessage(token_response.body, &token_doc, options).ok()) {
      return PullError{"RegistryUnauthorized", "The token service for " + what + " answered something that is not JSON."};
    }
    const auto& fields = token_doc.fields();
    std::string token;
    if (fields.count("token")) token = fields.at("token").string_value();
    if (token.empty() && fields.count("access_token")) token = fields.at("access_token").string_value();
    if (token.empty()) return PullError{"RegistryUnauthorized", "The token service for " + what + " gave no token."};
    value = "Bearer " + token;
  } else {
    return PullError{"RegistryUnauthorized", "The registry for " + what + " asks for unsupported authentication '" + challenge->scheme + "'."};
  }
  std::lock_guard lock(auth_mutex_);
  auth_by_repository_[ref.registry + "/" + ref.repository] = value;
  return std::nullopt;
}

HttpResult RegistryClient::Send(const oci::ImageReference& ref, const std::string& path,
                                std::vector<std::pair<std::string, std::string>> headers, const Credential* credential,
                                const BodySink* sink, std::optional<PullError>* error) {
  auto url = Url::Parse(BaseUrl(ref) + path);
  if (!url) {
    *error = PullError{"InvalidImageReference", "Cannot form a registry URL for " + ref.String() + "."};
    return {};
  }
  const std::string registry_host = url->host;
  bool authenticated = false;
  for (int hop = 0; hop <= options_.max_redirects; ++hop) {
    auto request_headers = headers;
    std::string auth = AuthHeader(ref);
    // Credentials go only to the registry itself, never to a storage host it redirects to.
    if (!auth.empty() && url->host == registry_host) request_headers.emplace_back("Authorization", auth);
    HttpResult response = http_.Get(*url, request_headers, sink);
    if (response.status == 401 && !authenticated && url->host == registry_host) {
      authenticated = true;
      if (auto auth_error = Authenticate(ref, response, credential)) {
        *error = auth_error;
        return response;
      }
      --hop;
      continue;
    }
    if (response.status == 301 || response.status == 302 || response.status == 303 || response.status == 307 ||
        response.status == 308) {
      auto next = url->Resolve(response.Header("location"));
      if (!next) {
        *error = PullError{"RegistryUnavailable", "The registry redirected " + ref.String() + " to an unusable location."};
        return response;
      }
      url = next;
      continue;
    }
    return response;
  }
  *error = PullError{"RegistryUnavailable", "The registry redirected " + ref.String() + " too many times."};
  return {};
}

PullResult<FetchedManifest> RegistryClient::GetManifest(const oci::ImageReference& ref, const std::string& reference,
                                                        const Credential* credential) {
  std::optional<PullError> error;
  HttpResult response = Send(ref, "/v2/" + ref.repository + "/manifests/" + reference, {{"Accept", kManifestAccept}},
                             credential, nullptr, &error);
  if (error) return *error;
  if (response.status != 200 || !response.body_complete) {
    return ErrorForStatus(response.status, ref.String(), response.error);
  }
  if (response.body.size() >= 64 * 1024) {
    return PullError{"UnsupportedManifest", "The manifest of " + ref.String() + " is larger than 64 KiB."};
  }
  FetchedManifest manifest;
  manifest.body = response.body;
  manifest.media_type = response.Header("content-type");
  manifest.media_type = manifest.media_type.substr(0, manifest.media_type.find(';'));
  manifest.digest = "sha256:" + crypto::Sha256Hex(manifest.body);
  if (reference.rfind("sha256:", 0) == 0 && manifest.digest != reference) {
    return PullError{"DigestMismatch", "The registry served a manifest for " + ref.String() + " whose digest is " +
                                           manifest.digest + ", not the one asked for."};
  }
  return manifest;
}

std::optional<PullError> RegistryClient::FetchBlob(const oci::ImageReference& ref, const std::string& digest,
                                                   int64_t size, const Credential* credential,
                                                   const std::function<bool(const char*, size_t)>& sink,
                                                   const std::function<void()>& restart) {
  const std::string what = ref.String() + " (blob " + digest + ")";
  int64_t received = 0;
  PullError last_error{"RegistryUnavailable", "The download of " + what + " failed."};
  for (int attempt = 0; attempt < options_.blob_attempts; ++attempt) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (received > 0) headers.emplace_back("Range", "bytes=" + std::to_string(received) + "-");
    bool first_chunk = true;
    bool oversized = false;
    BodySink counting = [&](int status, const char* data, size_t n) {
      if (first_chunk) {
        first_chunk = false;
        if (status == 200 && received > 0) {  // the registry ignored Range: start over
          received = 0;
          restart();
        }
      }
      received += static_cast<int64_t>(n);
      if (size > 0 && received > size) {
        oversized = true;
        return false;
      }
      return sink(data, n);
    };
    std::optional<PullError> error;
    HttpResult response = Send(ref, "/v2/" + ref.repository + "/blobs/" + digest, headers, credential, &counting, &error);
    if (error) return error;
    if (oversized) {
      return PullError{"DigestMismatch", "The registry sent more bytes for " + what + " than its manifest declares."};
    }
    if (response.status == 416 && size > 0 && received == size) return std::nullopt;  // already complete
    if (response.status != 200 && response.status != 206) {
      last_error = ErrorForStatus(response.status, what, response.error);
      if (response.status != 0 && response.status < 500 && response.status != 429) return last_error;
      continue;  // connection failure or server error: retry, resuming
    }
    if (response.body_complete && (size <= 0 || received == size)) return std::nullopt;
    last_error = {"RegistryUnavailable", "The download of " + what + " broke off after " + std::to_string(received) +
                                             " bytes: " + (response.error.empty() ? "short body" : response.error) + "."};
  }
  return last_error;
}

}  // namespace skiff::imagecache
