// Sign-in (cloud metadata, OpenID discovery, OAuth2 client credentials) and the account
// resources around container groups that the Azure CLI reads: subscriptions, tenants and
// resource groups.
#include "skiff/gateway/identity_api.h"

#include <boost/algorithm/string/case_conv.hpp>
#include <boost/algorithm/string/predicate.hpp>
#include <map>
#include <spdlog/spdlog.h>

#include "skiff/containerinstance/v1/identity.pb.h"
#include "skiff/crypto/crypto.h"
#include "skiff/gateway/group_api.h"
#include "skiff/gateway/group_codec.h"
#include "skiff/gateway/group_store.h"
#include "skiff/gateway/routes.h"

namespace skiff::gateway {

namespace ci = containerinstance::v1;

namespace {

constexpr std::string_view kMetadataPath = "/metadata/endpoints";
constexpr std::string_view kAuthorityPath = "/adfs";

HttpResponse JsonBody(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  response.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
  // Tokens and their errors must not be cached (RFC 6749 5.1).
  response.headers.emplace_back("Cache-Control", "no-store");
  response.headers.emplace_back("Pragma", "no-cache");
  return response;
}

HttpResponse OAuthFailure(int status, const std::string& error, const std::string& description) {
  ci::OAuthError body;
  body.set_error(error);
  body.set_error_description(description);
  return JsonBody(status, ToJson(body));
}

// The path without its query; clients that join "<endpoint>/" and "/metadata/..." send two
// leading slashes, which name the same path.
std::string PathOf(const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  size_t extra = 0;
  while (extra + 1 < path.size() && path[extra] == '/' && path[extra + 1] == '/') ++extra;
  return path.substr(extra);
}

// The form body; nullopt on a malformed escape or a repeated parameter (RFC 6749 3.2:
// parameters must not be repeated).
std::optional<std::map<std::string, std::string>> ParseForm(const std::string& body) {
  std::map<std::string, std::string> form;
  if (ParseUrlEncoded(body, &form, /*repeats_allowed=*/false) != UrlEncodedResult::kOk) return std::nullopt;
  return form;
}

std::string WithoutTrailingSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return boost::algorithm::to_lower_copy(s);
}

// Whether the requested scope (v2: "<resource>/.default", space-separated) or resource (v1)
// names this gateway.
bool NamesAudience(const std::map<std::string, std::string>& form, const std::string& base_url) {
  const std::string audience = WithoutTrailingSlash(base_url);
  if (auto resource = form.find("resource"); resource != form.end()) {
    return WithoutTrailingSlash(resource->second) == audience;
  }
  auto scope = form.find("scope");
  if (scope == form.end()) return false;
  size_t start = 0;
  const std::string& scopes = scope->second;
  while (start <= scopes.size()) {
    size_t space = scopes.find(' ', start);
    if (space == std::string::npos) space = scopes.size();
    std::string one = scopes.substr(start, space - start);
    start = space + 1;
    constexpr std::string_view kDefault = "/.default";
    if (boost::iends_with(one, kDefault) &&
        WithoutTrailingSlash(one.substr(0, one.size() - kDefault.size())) == audience) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool IdentityApi::Serves(const std::string& target) {
  const std::string path = PathOf(target);
  return boost::iequals(path, kMetadataPath) || boost::iequals(path, kAuthorityPath) ||
         boost::istarts_with(path, std::string(kAuthorityPath) + "/");
}

std::pair<ServicePrincipal, std::string> IdentityApi::NewServicePrincipal(const std::string& subscription_id,
                                                                         const std::string& name) {
  std::string secret = crypto::NewApiToken();
  ServicePrincipal principal{crypto::NewUuid(), crypto::HashApiToken(secret), subscription_id, name};
  return {principal, secret};
}

HttpResponse IdentityApi::Handle(const HttpRequest& request, const std::string& base_url) {
  const std::string path = WithoutTrailingSlash(PathOf(request.target));
  const std::string authority = base_url + std::string(kAuthorityPath);
  if (path == kMetadataPath) {
    if (request.method != "GET") return OAuthFailure(405, "invalid_request", "Only GET is allowed here.");
    // What `az cloud register --endpoint-resource-manager <gateway>` reads to fill in the rest.
    ci::CloudMetadata metadata;
    metadata.set_graph_endpoint(base_url + "/graph/");
    metadata.set_portal_endpoint(base_url + "/");
    metadata.mutable_authentication()->set_login_endpoint(authority);
    metadata.mutable_authentication()->add_audiences(base_url + "/");
    return JsonBody(200, ToJson(metadata));
  }
  const std::string tenant_discovery =
      "/adfs/" + boost::algorithm::to_lower_copy(options_.tenant_id) + "/.well-known/openid-configuration";
  if (path == "/adfs/.well-known/openid-configuration" || path == tenant_discovery) {
    if (request.method != "GET") return OAuthFailure(405, "invalid_request", "Only GET is allowed here.");
    ci::OpenIdConfiguration config;
    config.set_issuer(authority);
    config.set_authorization_endpoint(authority + "/oauth2/authorize");
    config.set_token_endpoint(authority + "/oauth2/v2.0/token");
    config.add_grant_types_supported("client_credentials");
    config.add_token_endpoint_auth_methods_supported("client_secret_post");
    config.add_token_endpoint_auth_methods_supported("client_secret_basic");
    config.add_response_types_supported("token");
    config.add_scopes_supported(base_url + "/.default");
    config.add_subject_types_supported("public");
    return JsonBody(200, ToJson(config));
  }
  if (path == "/adfs/oauth2/v2.0/token" || path == "/adfs/oauth2/token") {
    if (request.method != "POST") return OAuthFailure(405, "invalid_request", "The token endpoint takes POST.");
    return IssueToken(request, base_url);
  }
  if (path == "/adfs/oauth2/authorize" || path == "/adfs/oauth2/v2.0/authorize" ||
      path == "/adfs/oauth2/v2.0/devicecode" || path == "/adfs/oauth2/devicecode") {
    return OAuthFailure(400, "unsupported_response_type",
                        "Skiff signs in service principals only (client credentials); create one with "
                        "'skiff-gateway create-service-principal --subscription <id>'.");
  }
  if (boost::ends_with(path, "/.well-known/openid-configuration")) {
    return OAuthFailure(404, "invalid_tenant", "This gateway's only tenant is '" + options_.tenant_id + "'.");
  }
  return OAuthFailure(404, "invalid_request", "No sign-in endpoint at '" + path + "'.");
}

HttpResponse IdentityApi::IssueToken(const HttpRequest& request, const std::string& base_url) {
  if (!boost::istarts_with(request.Header("content-type"), "application/x-www-form-urlencoded")) {
    return OAuthFailure(400, "invalid_request", "The body must be application/x-www-form-urlencoded.");
  }
  auto form = ParseForm(request.body);
  if (!form) return OAuthFailure(400, "invalid_request", "The body is malformed or repeats a parameter.");
  auto grant = form->find("grant_type");
  if (grant == form->end() || grant->second.empty()) {
    return OAuthFailure(400, "invalid_request", "The 'grant_type' parameter is required.");
  }
  if (grant->second != "client_credentials") {
    return OAuthFailure(400, "unsupported_grant_type",
                        "The grant type '" + grant->second + "' is not supported; use client_credentials.");
  }
  // Client authentication: client_secret_basic (RFC 6749 2.3.1) or client_secret_post.
  std::string client_id, secret;
  if (std::string header = request.Header("authorization"); boost::istarts_with(header, "Basic ")) {
    auto decoded = crypto::Base64Decode(header.substr(6));
    size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos || !PercentDecode(decoded->substr(0, colon), client_id) ||
        !PercentDecode(decoded->substr(colon + 1), secret)) {
      return OAuthFailure(401, "invalid_client", "The Basic authorization header is malformed.");
    }
  } else {
    if (auto it = form->find("client_id"); it != form->end()) client_id = it->second;
    if (auto it = form->find("client_secret"); it != form->end()) secret = it->second;
  }
  if (client_id.empty()) return OAuthFailure(400, "invalid_request", "The 'client_id' parameter is required.");
  if (secret.empty()) {
    return OAuthFailure(401, "invalid_client", "A client secret is required (certificates are not supported).");
  }
  if (!NamesAudience(*form, base_url)) {
    return OAuthFailure(400, "invalid_scope",
                        "The requested scope or resource is not this gateway; ask for '" + base_url + "/.default'.");
  }
  try {
    std::optional<ServicePrincipal> principal;
    if (crypto::IsUuid(client_id)) principal = store_.FindServicePrincipal(boost::algorithm::to_lower_copy(client_id));
    if (!principal) {
      return OAuthFailure(401, "invalid_client", "No service principal with the client id '" + client_id + "'.");
    }
    if (principal->secret_hash != crypto::HashApiToken(secret)) {
      return OAuthFailure(401, "invalid_client", "Invalid client secret provided.");
    }
    const std::string token = crypto::NewApiToken();
    store_.AddExpiringToken(crypto::HashApiToken(token), principal->subscription_id, "sp:" + principal->client_id,
                            clock_.Now() + options_.token_lifetime);
    ci::TokenResponse response;
    response.set_token_type("Bearer");
    response.set_access_token(token);
    response.set_expires_in(static_cast<int32_t>(options_.token_lifetime.count()));
    response.set_ext_expires_in(static_cast<int32_t>(options_.token_lifetime.count()));
    if (auto resource = form->find("resource"); resource != form->end()) response.set_resource(resource->second);
    return JsonBody(200, ToJson(response));
  } catch (const StoreUnavailable& e) {
    spdlog::warn("token endpoint: store unavailable: {}", e.what());
    return OAuthFailure(503, "temporarily_unavailable", "The service is temporarily unavailable; retry later.");
  }
}

// Subscriptions, tenants and resource groups, as ARM's Microsoft.Resources answers them. A
// token sees the one subscription it is bound to; resource groups exist implicitly (a group
// PUT needs none created first) and sit in the first configured location.
HttpResponse GroupApi::AccountResource(const Route& route, const std::string& caller_subscription) {
  if (route.kind == RouteKind::kTenants) {
    ci::TenantList list;
    auto* tenant = list.add_value();
    tenant->set_id("/tenants/" + options_.tenant_id);
    tenant->set_tenant_id(options_.tenant_id);
    tenant->set_display_name("Skiff");
    tenant->set_tenant_category("Home");
    return JsonBody(200, ToJson(list));
  }
  auto describe = [&](ci::Subscription& s) {
    s.set_id("/subscriptions/" + caller_subscription);
    s.set_subscription_id(caller_subscription);
    s.set_tenant_id(options_.tenant_id);
    s.set_display_name("Skiff " + caller_subscription);
    s.set_state("Enabled");
    s.mutable_subscription_policies()->set_location_placement_id("Public_2014-09-01");
    s.mutable_subscription_policies()->set_quota_id("Skiff");
    s.mutable_subscription_policies()->set_spending_limit("Off");
    s.set_authorization_source("RoleBased");
  };
  if (route.kind == RouteKind::kSubscriptions) {
    ci::SubscriptionList list;
    describe(*list.add_value());
    return JsonBody(200, ToJson(list));
  }
  if (route.kind == RouteKind::kSubscription) {
    ci::Subscription subscription;
    describe(subscription);
    return JsonBody(200, ToJson(subscription));
  }
  // kResourceGroup
  if (!IsValidResourceGroupName(route.resource_group)) {
    return ErrorResponse({ErrorKind::kInvalidResourceGroupName,
                          "The resource group name '" + route.resource_group + "' is invalid.", ""});
  }
  if (route.method == "HEAD") {
    HttpResponse exists;
    exists.status = 204;
    return exists;
  }
  ci::ResourceGroup group;
  group.set_id("/subscriptions/" + caller_subscription + "/resourceGroups/" + route.resource_group);
  group.set_name(route.resource_group);
  group.set_type("Microsoft.Resources/resourceGroups");
  group.set_location(options_.limits.locations.empty() ? "" : options_.limits.locations.front());
  group.mutable_properties()->set_provisioning_state("Succeeded");
  return JsonBody(200, ToJson(group));
}

}  // namespace skiff::gateway
