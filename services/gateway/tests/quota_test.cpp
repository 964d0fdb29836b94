// Per-subscription quotas (groups, cores) and ACI's create-rate limits, checked on PUT.
#include <gtest/gtest.h>

#include "fake_group_store.h"
#include "skiff/crypto/crypto.h"
#include "skiff/gateway/group_api.h"
#include "test_support.h"

namespace skiff::gateway {
namespace {

const std::string kSub = "11111111-1111-4111-8111-111111111111";
const std::string kOtherSub = "22222222-2222-4222-8222-222222222222";
const std::string kToken = "skf_quota-token";
const std::string kOtherToken = "skf_quota-other";

class QuotaTest : public ::testing::Test {
 protected:
  QuotaTest() : box_(crypto::RandomBytes(32)) {
    store_.AddToken(crypto::HashApiToken(kToken), kSub, "");
    store_.AddToken(crypto::HashApiToken(kOtherToken), kOtherSub, "");
    GroupApiOptions options;
    options.quotas.groups = 3;
    options.quotas.cores = 2;
    options.quotas.creates_per_5_minutes = 4;
    options.quotas.creates_per_hour = 6;
    api_ = std::make_unique<GroupApi>(store_, clock_, box_, options, SequentialIds(&next_id_));
  }

  HttpResponse Put(const std::string& name, double cpu = 0.5, const std::string& token = kToken) {
    HttpRequest request;
    request.method = "PUT";
    const std::string sub = token == kToken ? kSub : kOtherSub;
    request.target = "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/" +
                     name + "?api-version=2023-05-01";
    request.headers["authorization"] = "Bearer " + token;
    request.headers["host"] = "localhost";
    request.body = R"({"location":"local","properties":{"osType":"Linux","containers":[{"name":"c","properties":{)"
                   R"("image":"127.0.0.1:5000/skiff/hello:1","resources":{"requests":{"cpu":)" +
                   std::to_string(cpu) + R"(,"memoryInGB":0.5}}}}]}})";
    return api_->Handle(request);
  }
  HttpResponse Delete(const std::string& name) {
    HttpRequest request;
    request.method = "DELETE";
    request.target = "/subscriptions/" + kSub + "/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/" +
                     name + "?api-version=2023-05-01";
    request.headers["authorization"] = "Bearer " + kToken;
    request.headers["host"] = "localhost";
    return api_->Handle(request);
  }

  FakeGroupStore store_;
  TestClock clock_;
  crypto::SecretBox box_;
  int next_id_ = 0;
  std::unique_ptr<GroupApi> api_;
};

TEST_F(QuotaTest, TheGroupQuotaRefusesTheGroupBeyondIt) {
  for (const std::string name : {"a", "b", "c"}) ASSERT_EQ(Put(name).status, 201);
  HttpResponse refused = Put("d");
  EXPECT_EQ(refused.status, 409);
  EXPECT_EQ(ErrorCode(refused), "ContainerGroupQuotaReached");
  EXPECT_NE(refused.body.find("Limit: '3', Usage: '3' Requested: '1'"), std::string::npos) << refused.body;
  // Updating an existing group is not a new group; another subscription has its own quota.
  EXPECT_EQ(Put("a").status, 200);
  EXPECT_EQ(Put("d", 0.5, kOtherToken).status, 201);
  // Deleting frees a slot.
  ASSERT_EQ(Delete("a").status, 202);
  EXPECT_EQ(Put("d").status, 201);
}

TEST_F(QuotaTest, TheCoreQuotaCountsRequestedCpuAcrossGroups) {
  ASSERT_EQ(Put("a", 1.5).status, 201);
  HttpResponse refused = Put("b", 1);
  EXPECT_EQ(refused.status, 409);
  EXPECT_EQ(ErrorCode(refused), "QuotaExceeded");
  EXPECT_NE(refused.body.find("'StandardCores'"), std::string::npos);
  EXPECT_EQ(Put("b", 0.5).status, 201);
  // Growing a group counts only the growth; shrinking is always allowed.
  EXPECT_EQ(Put("a", 2).status, 409);
  EXPECT_EQ(Put("a", 1).status, 200);
}

TEST_F(QuotaTest, CreatesBeyondTheRateAnswer429WithRetryAfter) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Put("g" + std::to_string(i), 0.1).status, 201);
    ASSERT_EQ(Delete("g" + std::to_string(i)).status, 202);  // deletes do not give creates back
    clock_.now += std::chrono::seconds(10);
  }
  ASSERT_EQ(Put("g3", 0.1).status, 201);
  HttpResponse limited = Put("g4", 0.1);
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(ErrorCode(limited), "TooManyRequests");
  // The first create was 30 s ago: the 5-minute window frees a slot in 270 s.
  EXPECT_EQ(limited.Header("Retry-After"), "270");
  clock_.now += std::chrono::seconds(271);
  EXPECT_EQ(Put("g4", 0.1).status, 201);
  // The hourly limit (6) comes next, with the wait until the hour's oldest create ages out.
  clock_.now += std::chrono::seconds(300);
  ASSERT_EQ(Delete("g3").status, 202);
  ASSERT_EQ(Delete("g4").status, 202);
  ASSERT_EQ(Put("g5", 0.1).status, 201);
  HttpResponse hourly = Put("g6", 0.1);
  EXPECT_EQ(hourly.status, 429);
  EXPECT_EQ(hourly.Header("Retry-After"), std::to_string(3600 - (30 + 271 + 300)));
}

TEST_F(QuotaTest, ZeroMeansNoLimit) {
  GroupApiOptions options;
  options.quotas = {0, 0, 0, 0};
  api_ = std::make_unique<GroupApi>(store_, clock_, box_, options, SequentialIds(&next_id_));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Put("g" + std::to_string(i), 1).status, 201);
}

TEST(ParseTime, ReadsWhatFormatTimeWrites) {
  auto time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000123));
  EXPECT_EQ(ParseTime(FormatTime(time)), time);
  EXPECT_FALSE(ParseTime("yesterday"));
  EXPECT_FALSE(ParseTime("2023-05-01T12:00:00"));
}

}  // namespace
}  // namespace skiff::gateway
