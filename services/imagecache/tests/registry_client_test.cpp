#include "skiff/imagecache/registry_client.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace skiff::imagecache {
namespace {

using testing::DigestOf;
using testing::FakeRegistry;
using testing::MakeTar;

TEST(ChallengeTest, ParsesBearerAndBasic) {
  auto c = ParseChallenge(R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull")");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scheme, "Bearer");
  EXPECT_EQ(c->params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(c->params["service"], "registry.docker.io");
  EXPECT_EQ(c->params["scope"], "repository:library/nginx:pull");
  auto basic = ParseChallenge(R"(Basic realm="Registry Realm")");
  ASSERT_TRUE(basic);
  EXPECT_EQ(basic->params["realm"], "Registry Realm");
  EXPECT_FALSE(ParseChallenge("").has_value());
  EXPECT_FALSE(ParseChallenge(R"(Bearer realm="unterminated)").has_value());
}

struct RegistryClientTest : ::testing::Test {
  FakeRegistry registry;
  RegistryClient client{registry, {{"registry.test"}}};
  oci::ImageReference ref = *oci::ParseImageReference("registry.test/app:1");
  std::string layer = MakeTar({{"hello.txt", 'f', "hello"}});

  std::string Fetch(const std::string& data, std::optional<PullError>* error, int64_t size = -1) {
    std::string digest = DigestOf(data);
    registry.blobs[digest] = data;
    std::string out;
    *error = client.FetchBlob(ref, digest, size < 0 ? static_cast<int64_t>(data.size()) : size, nullptr,
                              [&](const char* p, size_t n) {
                                out.append(p, n);
                                return true;
                              },
                              [&] { out.clear(); });
    return out;
  }
};

TEST_F(RegistryClientTest, BearerTokenDance) {
  registry.bearer_token = "tok123";
  registry.AddImage("app", "1", {layer});
  auto manifest = client.GetManifest(ref, "1", nullptr);
  ASSERT_FALSE(ErrorOf(manifest)) << ErrorOf(manifest)->message;
  // 401, token fetch, retry with the token.
  ASSERT_EQ(registry.requests.size(), 3u);
  EXPECT_EQ(registry.requests[1], "https://auth.test/token?service=registry.test&scope=repository:x:pull ");
  EXPECT_EQ(registry.requests[2], "http://registry.test/v2/app/manifests/1 Bearer tok123");
  // The token is reused.
  client.GetManifest(ref, "1", nullptr);
  EXPECT_EQ(registry.requests.size(), 4u);
}

TEST_F(RegistryClientTest, BearerTokenWithBasicCredentialsAndBasicAuth) {
  registry.bearer_token = "tok";
  registry.basic = "Basic " + crypto::Base64Encode("u:p");
  registry.AddImage("app", "1", {layer});
  Credential good{"u", "p"};
  EXPECT_FALSE(ErrorOf(client.GetManifest(ref, "1", &good)));
  RegistryClient other(registry, {{"registry.test"}});
  Credential bad{"u", "wrong"};
  auto refused = other.GetManifest(ref, "1", &bad);
  ASSERT_TRUE(ErrorOf(refused));
  EXPECT_EQ(ErrorOf(refused)->code, "RegistryUnauthorized");

  FakeRegistry plain;
  plain.basic = "Basic " + crypto::Base64Encode("u:p");
  plain.AddImage("app", "1", {layer});
  RegistryClient basic_client(plain, {{"registry.test"}});
  EXPECT_FALSE(ErrorOf(basic_client.GetManifest(ref, "1", &good)));
  RegistryClient anonymous(plain, {{"registry.test"}});
  EXPECT_EQ(ErrorOf(anonymous.GetManifest(ref, "1", nullptr))->code, "RegistryUnauthorized");
}

TEST_F(RegistryClientTest, ErrorsAUserCanActOn) {
  EXPECT_EQ(ErrorOf(client.GetManifest(ref, "missing", nullptr))->code, "ImageNotFound");
  registry.host = "elsewhere.test";
  auto down = client.GetManifest(ref, "1", nullptr);
  EXPECT_EQ(ErrorOf(down)->code, "RegistryUnavailable");
  EXPECT_NE(ErrorOf(down)->message.find("connection refused"), std::string::npos);
}

TEST_F(RegistryClientTest, ManifestByDigestIsVerified) {
  std::string digest = registry.AddImage("app", "1", {layer});
  EXPECT_FALSE(ErrorOf(client.GetManifest(ref, digest, nullptr)));
  std::string wrong = DigestOf("something else");
  registry.manifests["app:" + wrong] = registry.manifests["app:1"];
  EXPECT_EQ(ErrorOf(client.GetManifest(ref, wrong, nullptr))->code, "DigestMismatch");
}

TEST_F(RegistryClientTest, RedirectedBlobsGoWithoutCredentials) {
  registry.bearer_token = "secret-token";
  registry.redirect_blobs = true;
  std::optional<PullError> error;
  EXPECT_EQ(Fetch(layer, &error), layer);
  EXPECT_FALSE(error);
  for (const auto& request : registry.requests) {
    if (request.find("storage.test") != std::string::npos) EXPECT_EQ(request.find("secret-token"), std::string::npos);
  }
}

TEST_F(RegistryClientTest, BrokenDownloadResumesWithRange) {
  registry.break_blob_after = 10;
  std::optional<PullError> error;
  std::string big(100000, 'x');
  EXPECT_EQ(Fetch(big, &error), big);
  EXPECT_FALSE(error);
  EXPECT_EQ(registry.blob_gets[DigestOf(big)], 2);
}

TEST_F(RegistryClientTest, RangeIgnoredStartsOver) {
  registry.break_blob_after = 10;
  registry.ignore_range = true;
  std::optional<PullError> error;
  std::string big(5000, 'y');
  EXPECT_EQ(Fetch(big, &error), big);
  EXPECT_FALSE(error);
}

TEST_F(RegistryClientTest, MoreBytesThanDeclaredIsRefused) {
  std::optional<PullError> error;
  Fetch(std::string(100, 'z'), &error, 50);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "DigestMismatch");
}

}  // namespace
}  // namespace skiff::imagecache
