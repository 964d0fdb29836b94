// Sign-in as the Azure CLI and SDKs do it: cloud metadata, OpenID discovery, the OAuth2
// client-credentials grant (and every refusal, in RFC 6749's error shape), then the account
// resources the CLI reads with the token it got.
#include <gtest/gtest.h>

#include "fake_group_store.h"
#include "skiff/crypto/crypto.h"
#include "skiff/gateway/group_api.h"
#include "skiff/gateway/identity_api.h"
#include "skiff/gateway/routes.h"
#include "test_support.h"

namespace skiff::gateway {
namespace {

const std::string kSub = "55555555-5555-4555-8555-555555555555";

// Principals in memory; tokens land in the group store's token table, as in Postgres.
class FakeIdentityStore : public IdentityStore {
 public:
  explicit FakeIdentityStore(FakeGroupStore& groups) : groups_(groups) {}
  std::optional<ServicePrincipal> FindServicePrincipal(const std::string& client_id) override {
    groups_.Check();
    auto it = principals.find(client_id);
    if (it == principals.end()) return std::nullopt;
    return it->second;
  }
  void AddServicePrincipal(const ServicePrincipal& principal) override { principals[principal.client_id] = principal; }
  void AddExpiringToken(const std::string& hash, const std::string& subscription, const std::string& name,
                        std::chrono::system_clock::time_point expires_at) override {
    groups_.AddToken(hash, subscription, name);
    expiries.push_back(expires_at);
  }
  std::map<std::string, ServicePrincipal> principals;
  std::vector<std::chrono::system_clock::time_point> expiries;

 private:
  FakeGroupStore& groups_;
};

// The value of a top-level string field of a JSON body ("" when absent).
std::string Field(const std::string& body, const std::string& name) {
  auto start = body.find("\"" + name + "\":\"");
  if (start == std::string::npos) return "";
  start += name.size() + 4;
  return body.substr(start, body.find('"', start) - start);
}

class IdentityApiTest : public ::testing::Test {
 protected:
  IdentityApiTest() : box_(crypto::RandomBytes(32)), identity_store_(store_), identity_(identity_store_, clock_, {}) {
    auto [principal, secret] = IdentityApi::NewServicePrincipal(kSub, "ci");
    identity_store_.AddServicePrincipal(principal);
    client_id_ = principal.client_id;
    secret_ = secret;
    api_ = std::make_unique<GroupApi>(store_, clock_, box_, GroupApiOptions{}, SequentialIds(&next_id_));
    api_->SetIdentityApi(&identity_);
  }

  HttpResponse Anonymous(const std::string& method, const std::string& path, const std::string& body = "",
                         const std::string& content_type = "application/x-www-form-urlencoded") {
    HttpRequest request;
    request.method = method;
    request.target = path;
    request.headers["host"] = "127.0.0.1:8443";
    if (!body.empty()) request.headers["content-type"] = content_type;
    request.body = body;
    return api_->Handle(request);
  }
  HttpResponse Token(const std::string& body) { return Anonymous("POST", "/adfs/oauth2/v2.0/token", body); }
  std::string GoodForm() {
    return "client_id=" + client_id_ + "&client_secret=" + PercentEncode(secret_) +
           "&grant_type=client_credentials&scope=https%3A%2F%2F127.0.0.1%3A8443%2F.default&client_info=1";
  }

  FakeGroupStore store_;
  TestClock clock_;
  crypto::SecretBox box_;
  FakeIdentityStore identity_store_;
  IdentityApi identity_;
  int next_id_ = 0;
  std::unique_ptr<GroupApi> api_;
  std::string client_id_, secret_;
};

TEST_F(IdentityApiTest, CloudMetadataNamesTheAuthorityAndAudience) {
  auto response = Anonymous("GET", "/metadata/endpoints?api-version=2015-01-01");
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_NE(response.body.find(R"("loginEndpoint":"https://127.0.0.1:8443/adfs")"), std::string::npos) << response.body;
  EXPECT_NE(response.body.find(R"("audiences":["https://127.0.0.1:8443/"])"), std::string::npos) << response.body;
  // `az cloud register --endpoint-resource-manager https://host/` asks for //metadata/endpoints.
  EXPECT_EQ(Anonymous("GET", "//metadata/endpoints?api-version=2015-01-01").status, 200);
}

TEST_F(IdentityApiTest, OpenIdDiscoveryPointsAtTheTokenEndpoint) {
  auto response = Anonymous("GET", "/adfs/.well-known/openid-configuration");
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Field(response.body, "token_endpoint"), "https://127.0.0.1:8443/adfs/oauth2/v2.0/token");
  EXPECT_EQ(Field(response.body, "issuer"), "https://127.0.0.1:8443/adfs");
  EXPECT_FALSE(Field(response.body, "authorization_endpoint").empty());
  // `az login --tenant adfs` resolves the tenant name through <authority>/adfs/... and takes the
  // tenant from the issuer's path.
  auto by_tenant = Anonymous("GET", "/adfs/adfs/.well-known/openid-configuration");
  ASSERT_EQ(by_tenant.status, 200);
  EXPECT_EQ(Field(by_tenant.body, "issuer"), "https://127.0.0.1:8443/adfs");
  auto other = Anonymous("GET", "/adfs/contoso.onmicrosoft.com/.well-known/openid-configuration");
  EXPECT_EQ(other.status, 404);
  EXPECT_EQ(Field(other.body, "error"), "invalid_tenant");
}

TEST_F(IdentityApiTest, ClientCredentialsGrantIssuesATokenTheApiAccepts) {
  auto response = Token(GoodForm());
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.Header("Cache-Control"), "no-store");
  EXPECT_EQ(Field(response.body, "token_type"), "Bearer");
  EXPECT_NE(response.body.find(R"("expires_in":3600)"), std::string::npos) << response.body;
  const std::string token = Field(response.body, "access_token");
  ASSERT_FALSE(token.empty());
  ASSERT_EQ(identity_store_.expiries.size(), 1u);
  EXPECT_EQ(identity_store_.expiries[0], clock_.now + std::chrono::hours(1));

  auto subscriptions = api_->Handle(AuthorizedRequest(token, "GET", "/subscriptions?api-version=2022-12-01"));
  ASSERT_EQ(subscriptions.status, 200) << subscriptions.body;
  EXPECT_EQ(Field(subscriptions.body, "subscriptionId"), kSub);
  EXPECT_EQ(Field(subscriptions.body, "tenantId"), "adfs");
  EXPECT_EQ(Field(subscriptions.body, "state"), "Enabled");
}

TEST_F(IdentityApiTest, V1EndpointWithResourceAndBasicAuthentication) {
  HttpRequest request;
  request.method = "POST";
  request.target = "/adfs/oauth2/token";
  request.headers["host"] = "127.0.0.1:8443";
  request.headers["content-type"] = "application/x-www-form-urlencoded; charset=utf-8";
  request.headers["authorization"] = "Basic " + crypto::Base64Encode(client_id_ + ":" + secret_);
  request.body = "grant_type=client_credentials&resource=https%3A%2F%2F127.0.0.1%3A8443%2F";
  auto response = api_->Handle(request);
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Field(response.body, "resource"), "https://127.0.0.1:8443/");
}

TEST_F(IdentityApiTest, RefusalsFollowRfc6749) {
  struct Case {
    std::string body;
    int status;
    std::string error;
  };
  const std::string id = "client_id=" + client_id_;
  const std::string scope = "&scope=https%3A%2F%2F127.0.0.1%3A8443%2F.default";
  const std::vector<Case> cases = {
      {id + "&client_secret=" + PercentEncode(secret_) + scope, 400, "invalid_request"},  // no grant_type
      {id + "&client_secret=x&grant_type=password" + scope, 400, "unsupported_grant_type"},
      {"client_secret=x&grant_type=client_credentials" + scope, 400, "invalid_request"},  // no client_id
      {id + "&grant_type=client_credentials" + scope, 401, "invalid_client"},             // no secret
      {id + "&client_secret=wrong&grant_type=client_credentials" + scope, 401, "invalid_client"},
      {"client_id=66666666-6666-4666-8666-666666666666&client_secret=x&grant_type=client_credentials" + scope, 401,
       "invalid_client"},
      {"client_id=not-a-uuid&client_secret=x&grant_type=client_credentials" + scope, 401, "invalid_client"},
      {id + "&client_secret=" + PercentEncode(secret_) +
           "&grant_type=client_credentials&scope=https%3A%2F%2Fmanagement.azure.com%2F.default",
       400, "invalid_scope"},
      {id + "&client_secret=" + PercentEncode(secret_) + "&grant_type=client_credentials", 400, "invalid_scope"},
      {id + "&client_id=x&client_secret=y&grant_type=client_credentials" + scope, 400, "invalid_request"},  // repeated
      {id + "&client_secret=%zz&grant_type=client_credentials" + scope, 400, "invalid_request"},  // bad escape
  };
  for (const auto& c : cases) {
    auto response = Token(c.body);
    EXPECT_EQ(response.status, c.status) << c.body << " -> " << response.body;
    EXPECT_EQ(Field(response.body, "error"), c.error) << c.body;
    EXPECT_FALSE(Field(response.body, "error_description").empty()) << c.body;
  }
  EXPECT_TRUE(identity_store_.expiries.empty()) << "no refusal may issue a token";

  auto json = Anonymous("POST", "/adfs/oauth2/v2.0/token", GoodForm(), "application/json");
  EXPECT_EQ(json.status, 400);
  EXPECT_EQ(Field(json.body, "error"), "invalid_request");
  EXPECT_EQ(Anonymous("GET", "/adfs/oauth2/v2.0/token").status, 405);
  auto interactive = Anonymous("GET", "/adfs/oauth2/authorize?response_type=code");
  EXPECT_EQ(interactive.status, 400);
  EXPECT_EQ(Field(interactive.body, "error"), "unsupported_response_type");
  EXPECT_EQ(Anonymous("GET", "/adfs/nothing-here").status, 404);
}

TEST_F(IdentityApiTest, StoreDownIsTemporarilyUnavailable) {
  store_.down = true;
  auto response = Token(GoodForm());
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(Field(response.body, "error"), "temporarily_unavailable");
}

TEST_F(IdentityApiTest, AccountResourcesNeedAToken) {
  auto anonymous = Anonymous("GET", "/subscriptions?api-version=2022-12-01");
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(ErrorCode(anonymous), "AuthenticationFailed");
}

TEST_F(IdentityApiTest, TenantsSubscriptionAndResourceGroups) {
  const std::string token = Field(Token(GoodForm()).body, "access_token");
  auto call = [&](const std::string& method, const std::string& path) {
    return api_->Handle(AuthorizedRequest(token, method, path));
  };
  auto tenants = call("GET", "/tenants?api-version=2022-12-01");
  ASSERT_EQ(tenants.status, 200) << tenants.body;
  EXPECT_EQ(Field(tenants.body, "id"), "/tenants/adfs");

  auto subscription = call("GET", "/subscriptions/" + kSub + "?api-version=2022-12-01");
  ASSERT_EQ(subscription.status, 200) << subscription.body;
  EXPECT_EQ(Field(subscription.body, "id"), "/subscriptions/" + kSub);
  auto other = call("GET", "/subscriptions/77777777-7777-4777-8777-777777777777?api-version=2022-12-01");
  EXPECT_EQ(other.status, 404);
  EXPECT_EQ(ErrorCode(other), "SubscriptionNotFound");

  auto group = call("GET", "/subscriptions/" + kSub + "/resourcegroups/demo?api-version=2022-09-01");
  ASSERT_EQ(group.status, 200) << group.body;
  EXPECT_EQ(Field(group.body, "location"), "local");
  EXPECT_EQ(Field(group.body, "name"), "demo");
  EXPECT_EQ(Field(group.body, "id"), "/subscriptions/" + kSub + "/resourceGroups/demo");
  EXPECT_EQ(call("HEAD", "/subscriptions/" + kSub + "/resourcegroups/demo?api-version=2022-09-01").status, 204);

  auto bad_name = call("GET", "/subscriptions/" + kSub + "/resourcegroups/bad%20name*?api-version=2022-09-01");
  EXPECT_EQ(bad_name.status, 400);
  EXPECT_EQ(ErrorCode(bad_name), "InvalidResourceGroupName");
  auto put = call("PUT", "/subscriptions/" + kSub + "/resourcegroups/demo?api-version=2022-09-01");
  EXPECT_EQ(put.status, 405);
  auto undated = call("GET", "/subscriptions?api-version=latest");
  EXPECT_EQ(undated.status, 400);
  EXPECT_EQ(ErrorCode(undated), "InvalidApiVersionParameter");
}

}  // namespace
}  // namespace skiff::gateway
