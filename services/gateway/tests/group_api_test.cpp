#include "skiff/gateway/group_api.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "fake_group_store.h"
#include "skiff/secrets/group_secrets.h"
#include "skiff/crypto/crypto.h"
#include "skiff/events/v1/group_events.pb.h"
#include "test_support.h"

namespace skiff::gateway {
namespace ci = containerinstance::v1;
namespace {

const std::string kSub = "11111111-1111-4111-8111-111111111111";
const std::string kOtherSub = "22222222-2222-4222-8222-222222222222";
const std::string kToken = "skf_test-token";
const std::string kOtherToken = "skf_other-token";

class GroupApiTest : public ::testing::Test {
 protected:
  GroupApiTest() : box_(crypto::RandomBytes(32)) {
    store_.AddToken(crypto::HashApiToken(kToken), kSub, "");
    store_.AddToken(crypto::HashApiToken(kOtherToken), kOtherSub, "");
    GroupApiOptions options;
    options.page_size = 3;
    options.public_url = "https://skiff.test";
    api_ = std::make_unique<GroupApi>(store_, clock_, box_, options, SequentialIds(&next_id_));
  }

  HttpResponse Call(const std::string& method, const std::string& path, const std::string& body = "",
                    const std::string& token = kToken, const std::string& version = "2023-05-01") {
    HttpRequest request;
    request.method = method;
    request.target = path + (path.find('?') == std::string::npos ? "?" : "&") + "api-version=" + version;
    if (!token.empty()) request.headers["authorization"] = "Bearer " + token;
    request.headers["host"] = "localhost:8443";
    request.body = body;
    return api_->Handle(request);
  }

  static std::string GroupPath(const std::string& name, const std::string& rg = "rg1", const std::string& sub = kSub) {
    return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.ContainerInstance/containerGroups/" +
           name;
  }

  FakeGroupStore store_;
  TestClock clock_;
  crypto::SecretBox box_;
  int next_id_ = 0;
  std::unique_ptr<GroupApi> api_;
};

TEST_F(GroupApiTest, CreateGetPatchDelete) {
  HttpResponse created = Call("PUT", GroupPath("web"), ReadTestData("aci_minimal.json"));
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_NE(created.body.find("\"provisioningState\":\"Pending\""), std::string::npos);
  EXPECT_NE(created.body.find("\"type\":\"Microsoft.ContainerInstance/containerGroups\""), std::string::npos);
  std::string op_url = created.Header("Azure-AsyncOperation");
  EXPECT_EQ(op_url.rfind("https://skiff.test/subscriptions/" + kSub +
                            "/providers/Microsoft.ContainerInstance/locations/local/operations/",
                        0),
            0u)
      << op_url;

  HttpResponse got = Call("GET", GroupPath("web"));
  ASSERT_EQ(got.status, 200);
  EXPECT_NE(got.body.find("\"id\":\"/subscriptions/" + kSub +
                          "/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups/web\""),
            std::string::npos);
  EXPECT_NE(got.body.find("\"restartPolicy\":\"Never\""), std::string::npos);

  // Names are case-insensitive, as in ARM.
  EXPECT_EQ(Call("GET", GroupPath("web", "RG1")).status, 200);

  HttpResponse patched = Call("PATCH", GroupPath("web"), R"({"tags":{"team":"a"}})");
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_NE(patched.body.find("\"team\":\"a\""), std::string::npos);

  HttpResponse deleted = Call("DELETE", GroupPath("web"));
  ASSERT_EQ(deleted.status, 202);
  EXPECT_NE(deleted.Header("Location").find("/operationResults/"), std::string::npos);
  EXPECT_EQ(Call("GET", GroupPath("web")).status, 404);
  EXPECT_EQ(ErrorCode(Call("GET", GroupPath("web"))), "ResourceNotFound");
  EXPECT_EQ(Call("DELETE", GroupPath("web")).status, 204);

  // The Location URL reports completion.
  std::string location = deleted.Header("Location");
  std::string path = location.substr(std::string("https://skiff.test").size());
  path = path.substr(0, path.find('?'));
  EXPECT_EQ(Call("GET", path).status, 204);

  // One event per change, in order, each with its own id.
  ASSERT_EQ(store_.outbox.size(), 3u);
  EXPECT_EQ(store_.outbox[0].subject, "skiff.events.group.created");
  EXPECT_EQ(store_.outbox[1].subject, "skiff.events.group.updated");
  EXPECT_EQ(store_.outbox[2].subject, "skiff.events.group.deleted");
  events::v1::GroupEvent event;
  ASSERT_TRUE(event.ParseFromString(store_.outbox[1].payload));
  EXPECT_TRUE(event.updated().tags_only());
  EXPECT_EQ(event.group().generation(), 2);
  EXPECT_EQ(event.event_id(), store_.outbox[1].event_id);
}

TEST_F(GroupApiTest, PutOverExistingUpdates) {
  ASSERT_EQ(Call("PUT", GroupPath("web"), ReadTestData("aci_minimal.json")).status, 201);
  HttpResponse again = Call("PUT", GroupPath("web"), ReadTestData("aci_minimal.json"));
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(store_.groups.begin()->second.generation, 2);
  HttpResponse op = Call("GET", "/subscriptions/" + kSub + "/providers/Microsoft.ContainerInstance/locations/local/operations/" +
                                    store_.operations.rbegin()->first);
  EXPECT_EQ(op.status, 200);
  EXPECT_NE(op.body.find("\"status\":\"InProgress\""), std::string::npos);
}

TEST_F(GroupApiTest, SecureValuesAreStoredSealedAndNeverReturned) {
  ASSERT_EQ(Call("PUT", GroupPath("web"), ReadTestData("aci_minimal.json")).status, 201);
  const auto& record = store_.groups.begin()->second;
  const auto& container = record.spec.properties().containers(0);
  const auto& stored = container.properties();
  EXPECT_TRUE(crypto::SecretBox::IsSealed(stored.environment_variables(1).secure_value()));
  EXPECT_EQ(box_.Open(stored.environment_variables(1).secure_value(),
                      secrets::EnvContext(kSub, record.group_id, container.name(), "SECRET")),
            "s3cr3t-value");
  for (const auto& r : {Call("GET", GroupPath("web")),
                        Call("GET", "/subscriptions/" + kSub + "/providers/Microsoft.ContainerInstance/containerGroups")}) {
    EXPECT_EQ(r.body.find("s3cr3t-value"), std::string::npos);
    EXPECT_EQ(r.body.find("enc:v"), std::string::npos);
    EXPECT_NE(r.body.find("\"name\":\"SECRET\""), std::string::npos);
  }
  EXPECT_EQ(store_.outbox[0].payload.find("s3cr3t-value"), std::string::npos);
}

// A secure value that looks sealed (a ciphertext lifted from another group) is not passed
// through: it is sealed again as the text it is, so the node hands the container that text.
TEST_F(GroupApiTest, ASealedLookingSecureValueIsSealedAgainNotPassedThrough) {
  ASSERT_EQ(Call("PUT", GroupPath("web"), ReadTestData("aci_minimal.json")).status, 201);
  const GroupRecord victim = store_.groups.begin()->second;
  const std::string stolen = victim.spec.properties().containers(0).properties().environment_variables(1).secure_value();
  std::string body = ReadTestData("aci_minimal.json");
  const std::string plain = "\"s3cr3t-value\"";
  ASSERT_NE(body.find(plain), std::string::npos);
  body.replace(body.find(plain), plain.size(), "\"" + stolen + "\"");
  ASSERT_EQ(Call("PUT", GroupPath("copycat"), body).status, 201);
  for (const auto& [key, record] : store_.groups) {
    if (record.group_id == victim.group_id) continue;
    const auto& container = record.spec.properties().containers(0);
    const std::string& sealed = container.properties().environment_variables(1).secure_value();
    EXPECT_NE(sealed, stolen);
    EXPECT_EQ(box_.Open(sealed, secrets::EnvContext(kSub, record.group_id, container.name(), "SECRET")), stolen);
    EXPECT_EQ(box_.Open(stolen, secrets::EnvContext(kSub, record.group_id, container.name(), "SECRET")), std::nullopt);
  }
}

// A subscription id is stored and published in lower case, whatever the URL's case, so every
// view (and every service downstream of the events) finds the group under one id.
TEST_F(GroupApiTest, SubscriptionIdsAreNormalizedToLowerCase) {
  const std::string mixed = "AbCdEf01-2345-4678-89aB-CDEF01234567";
  const std::string lower = "abcdef01-2345-4678-89ab-cdef01234567";
  const std::string token = "skf_mixed-case";
  store_.AddToken(crypto::HashApiToken(token), mixed, "");
  ASSERT_EQ(Call("PUT", GroupPath("web", "rg1", mixed), ReadTestData("aci_minimal.json"), token).status, 201);
  const GroupRecord& record = store_.groups.begin()->second;
  EXPECT_EQ(record.key.subscription_id, lower);
  events::v1::GroupEvent event;
  ASSERT_TRUE(event.ParseFromString(store_.outbox.back().payload));
  EXPECT_EQ(event.group().subscription_id(), lower);
  HttpResponse got = Call("GET", GroupPath("web", "rg1", lower), "", token);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_NE(got.body.find("\"id\":\"/subscriptions/" + lower + "/"), std::string::npos) << got.body;
  EXPECT_EQ(Call("GET", GroupPath("web", "rg1", mixed), "", token).status, 200);
}

TEST_F(GroupApiTest, AuthenticationAndTenantIsolation) {
  EXPECT_EQ(Call("GET", GroupPath("web"), "", "").status, 401);
  EXPECT_EQ(ErrorCode(Call("GET", GroupPath("web"), "", "")), "AuthenticationFailed");
  EXPECT_EQ(Call("GET", GroupPath("web"), "", "wrong").status, 401);
  EXPECT_EQ(ErrorCode(Call("GET", GroupPath("web"), "", "wrong")), "InvalidAuthenticationToken");

  ASSERT_EQ(Call("PUT", GroupPath("web"), ReadTestData("aci_minimal.json")).status, 201);
  // The other tenant can neither see nor touch it, and learns nothing about it.
  for (const std::string method : {"GET", "DELETE", "PUT", "PATCH"}) {
    HttpResponse r = Call(method, GroupPath("web"), ReadTestData("aci_minimal.json"), kOtherToken);
    EXPECT_EQ(r.status, 404) << method;
    EXPECT_EQ(ErrorCode(r), "SubscriptionNotFound");
  }
  HttpResponse own_list =
      Call("GET", "/subscriptions/" + kOtherSub + "/providers/Microsoft.ContainerInstance/containerGroups", "", kOtherToken);
  EXPECT_EQ(own_list.status, 200);
  EXPECT_EQ(own_list.body.find("web"), std::string::npos);
  EXPECT_EQ(store_.groups.size(), 1u);
}

TEST_F(GroupApiTest, TokenLookupsAreCached) {
  Call("GET", GroupPath("a"));
  Call("GET", GroupPath("b"));
  EXPECT_EQ(store_.token_lookups, 1);
}

TEST_F(GroupApiTest, ApiVersions) {
  EXPECT_EQ(Call("GET", GroupPath("web"), "", kToken, "2022-10-01-preview").status, 404);  // accepted, not found
  HttpResponse bad = Call("GET", GroupPath("web"), "", kToken, "1999-01-01");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(ErrorCode(bad), "InvalidApiVersionParameter");
  HttpRequest request;
  request.method = "GET";
  request.target = GroupPath("web");
  request.headers["authorization"] = "Bearer " + kToken;
  EXPECT_EQ(ErrorCode(api_->Handle(request)), "MissingApiVersionParameter");
}

TEST_F(GroupApiTest, ListPagesWithNextLink) {
  for (const char* name : {"a", "b", "c", "d", "e"}) {
    ASSERT_EQ(Call("PUT", GroupPath(name, "rg1"), ReadTestData("aci_minimal.json")).status, 201);
  }
  ASSERT_EQ(Call("PUT", GroupPath("z", "rg2"), ReadTestData("aci_minimal.json")).status, 201);
  std::vector<std::string> seen;
  std::string next = "/subscriptions/" + kSub + "/providers/Microsoft.ContainerInstance/containerGroups";
  int pages = 0;
  while (!next.empty() && pages < 10) {
    ++pages;
    HttpRequest request;
    request.method = "GET";
    request.target = next.find('?') == std::string::npos ? next + "?api-version=2023-05-01" : next;
    request.headers["authorization"] = "Bearer " + kToken;
    HttpResponse page = api_->Handle(request);
    ASSERT_EQ(page.status, 200) << page.body;
    ci::ContainerGroupListResult result;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(page.body, &result).ok());
    for (const auto& g : result.value()) seen.push_back(g.name());
    next = result.next_link().empty() ? "" : result.next_link().substr(std::string("https://skiff.test").size());
  }
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c", "d", "e", "z"}));

  HttpResponse rg2 = Call("GET", "/subscriptions/" + kSub +
                                     "/resourceGroups/rg2/providers/Microsoft.ContainerInstance/containerGroups");
  EXPECT_NE(rg2.body.find("\"name\":\"z\""), std::string::npos);
  EXPECT_EQ(rg2.body.find("nextLink"), std::string::npos);
  EXPECT_EQ(Call("GET", "/subscriptions/" + kSub + "/providers/Microsoft.ContainerInstance/containerGroups?$skipToken=!!")
                .status,
            400);
}

TEST_F(GroupApiTest, BadInputGetsArmErrors) {
  EXPECT_EQ(ErrorCode(Call("PUT", GroupPath("Bad_Name"), ReadTestData("aci_minimal.json"))), "InvalidContainerGroupName");
  EXPECT_EQ(ErrorCode(Call("PUT", GroupPath("web", "bad rg"), ReadTestData("aci_minimal.json"))), "InvalidResourceGroupName");
  EXPECT_EQ(ErrorCode(Call("PUT", GroupPath("web"), "{not json")), "InvalidRequestContent");
  EXPECT_EQ(ErrorCode(Call("PATCH", GroupPath("web"), R"({"tags":{"a":"b"}})")), "ResourceNotFound");
  EXPECT_EQ(ErrorCode(Call("PATCH", GroupPath("web"), R"({"tags":[1]})")), "InvalidRequestContent");
  EXPECT_EQ(Call("POST", GroupPath("web")).status, 405);
  EXPECT_EQ(Call("GET", "/subscriptions/" + kSub + "/providers/Microsoft.ContainerInstance/locations/local/operations/nope")
                .status,
            404);
  EXPECT_TRUE(store_.groups.empty());
  EXPECT_TRUE(store_.outbox.empty());
}

class FixedCatalog : public ImageCatalog {
 public:
  std::optional<std::vector<Entry>> CachedImages() override { return entries; }
  std::optional<std::vector<Entry>> entries;
};

TEST_F(GroupApiTest, CachedImagesFromTheCatalog) {
  const std::string path = "/subscriptions/" + kSub + "/providers/Microsoft.ContainerInstance/locations/local/cachedImages";
  EXPECT_EQ(Call("GET", path).status, 503);  // no imagecache answered
  FixedCatalog catalog;
  api_->SetImageCatalog(&catalog);
  EXPECT_EQ(Call("GET", path).status, 503);
  catalog.entries = std::vector<ImageCatalog::Entry>{{"docker.io/library/nginx:latest", "Linux"},
                                                     {"docker.io/library/nginx:latest", "Linux"},
                                                     {"127.0.0.1:5000/skiff/hello:1", "Linux"}};
  HttpResponse listed = Call("GET", path);
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(listed.body,
            R"({"value":[{"osType":"Linux","image":"docker.io/library/nginx:latest"},{"osType":"Linux","image":"127.0.0.1:5000/skiff/hello:1"}]})");
  EXPECT_EQ(ErrorCode(Call("GET", "/subscriptions/" + kSub + "/providers/Microsoft.ContainerInstance/locations/mars/cachedImages")),
            "LocationNotAvailableForResourceType");
  EXPECT_EQ(Call("GET", "/subscriptions/" + kOtherSub + "/providers/Microsoft.ContainerInstance/locations/local/cachedImages").status,
            404);
}

TEST_F(GroupApiTest, StoreOutageIs503NotACrash) {
  ASSERT_EQ(Call("PUT", GroupPath("web"), ReadTestData("aci_minimal.json")).status, 201);  // warms the token cache
  store_.down = true;
  HttpResponse r = Call("GET", GroupPath("web"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(ErrorCode(r), "ServiceUnavailable");
}

}  // namespace
}  // namespace skiff::gateway
