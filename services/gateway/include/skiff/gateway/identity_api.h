#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "skiff/gateway/clock.h"
#include "skiff/gateway/http_types.h"

namespace skiff::gateway {

// A service principal: the client id and secret that `az login --service-principal` and the
// SDKs' ClientSecretCredential sign in with, bound to one subscription.
struct ServicePrincipal {
  std::string client_id;    // a UUID (ARM's appId)
  std::string secret_hash;  // crypto::HashApiToken of the secret; the secret is never stored
  std::string subscription_id;
  std::string name;
};

class IdentityStore {
 public:
  virtual ~IdentityStore() = default;
  virtual std::optional<ServicePrincipal> FindServicePrincipal(const std::string& client_id) = 0;
  virtual void AddServicePrincipal(const ServicePrincipal& principal) = 0;
  // Stores a token's hash bound to the subscription until `expires_at` (the same table the
  // API's Bearer check reads).
  virtual void AddExpiringToken(const std::string& token_hash, const std::string& subscription_id,
                                const std::string& name, std::chrono::system_clock::time_point expires_at) = 0;
};

struct IdentityOptions {
  std::chrono::seconds token_lifetime{3600};
  // The one tenant ("adfs" as Azure Stack's ADFS; the CLI resolves a non-GUID tenant through
  // <authority>/<tenant>/.well-known/openid-configuration).
  std::string tenant_id = "adfs";
};

// Sign-in without a token, as an ADFS authority (the `/adfs` path makes MSAL skip Azure's
// instance discovery): cloud metadata for `az cloud register`, OpenID discovery, and the
// OAuth2 client-credentials token endpoint. Tokens are opaque random strings, not JWTs:
// only Skiff reads them.
class IdentityApi {
 public:
  IdentityApi(IdentityStore& store, const Clock& clock, IdentityOptions options)
      : store_(store), clock_(clock), options_(options) {}

  // Whether the request's path is one of the sign-in paths (served without authentication).
  static bool Serves(const std::string& target);
  // `base_url`: the gateway's own https origin; the token audience is `base_url + "/"`.
  HttpResponse Handle(const HttpRequest& request, const std::string& base_url);

  // A new principal for `subscription_id`: the record to store and the secret, shown once.
  static std::pair<ServicePrincipal, std::string> NewServicePrincipal(const std::string& subscription_id,
                                                                      const std::string& name);

 private:
  HttpResponse IssueToken(const HttpRequest& request, const std::string& base_url);

  IdentityStore& store_;
  const Clock& clock_;
  IdentityOptions options_;
};

}  // namespace skiff::gateway
