#include <gtest/gtest.h>

#include "skiff/gateway/api_error.h"

namespace skiff::gateway {
namespace {

TEST(ErrorMappingTest, StatusesFollowArmConventions) {
  EXPECT_EQ(HttpStatusFor(ErrorKind::kMalformedJson), 400);
  EXPECT_EQ(HttpStatusFor(ErrorKind::kRequestTooLarge), 413);
  EXPECT_EQ(HttpStatusFor(ErrorKind::kMissingToken), 401);
  EXPECT_EQ(HttpStatusFor(ErrorKind::kInvalidToken), 401);
  EXPECT_EQ(HttpStatusFor(ErrorKind::kSubscriptionNotFound), 404);
  EXPECT_EQ(HttpStatusFor(ErrorKind::kResourceNotFound), 404);
  EXPECT_EQ(HttpStatusFor(ErrorKind::kMethodNotAllowed), 405);
  EXPECT_EQ(HttpStatusFor(ErrorKind::kConcurrentUpdate), 409);
  EXPECT_EQ(HttpStatusFor(ErrorKind::kStoreUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(ErrorKind::kInternal), 500);
  EXPECT_EQ(ArmCodeFor(ErrorKind::kMissingApiVersion), "MissingApiVersionParameter");
  EXPECT_EQ(ArmCodeFor(ErrorKind::kResourceNotFound), "ResourceNotFound");
}

TEST(ErrorMappingTest, EveryKindHasItsOwnRow) {
  // kInternal is the table's last row and the fallback; any other kind mapping to it was forgotten.
  for (int k = 0; k < static_cast<int>(ErrorKind::kInternal); ++k) {
    EXPECT_NE(ArmCodeFor(static_cast<ErrorKind>(k)), "InternalServerError") << "kind " << k;
  }
}

TEST(ErrorMappingTest, ResponseIsArmShapedJson) {
  HttpResponse r = ErrorResponse({ErrorKind::kInvalidContainerName, "bad \"name\"", "properties.containers[0].name"});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body,
            R"({"error":{"code":"InvalidContainerName","message":"bad \"name\"","target":"properties.containers[0].name"}})");
  EXPECT_EQ(r.Header("Content-Type"), "application/json; charset=utf-8");
  EXPECT_EQ(ErrorResponse({ErrorKind::kMissingToken, "x", ""}).Header("WWW-Authenticate"), "Bearer");
}

}  // namespace
}  // namespace skiff::gateway
