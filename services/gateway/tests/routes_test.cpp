#include "skiff/gateway/routes.h"

#include <gtest/gtest.h>

namespace skiff::gateway {
namespace {

const std::string kGroupPath =
    "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg1/providers/"
    "Microsoft.ContainerInstance/containerGroups/web";

Route Ok(const std::string& method, const std::string& target) {
  auto parsed = ParseRoute(method, target);
  EXPECT_TRUE(std::holds_alternative<Route>(parsed)) << target;
  return std::get<Route>(parsed);
}

ErrorKind Err(const std::string& method, const std::string& target) {
  auto parsed = ParseRoute(method, target);
  EXPECT_TRUE(std::holds_alternative<ApiError>(parsed)) << target;
  return std::holds_alternative<ApiError>(parsed) ? std::get<ApiError>(parsed).kind : ErrorKind::kInternal;
}

TEST(RoutesTest, GroupRouteWithQuery) {
  Route r = Ok("PUT", kGroupPath + "?api-version=2023-05-01");
  EXPECT_EQ(r.kind, RouteKind::kGroup);
  EXPECT_EQ(r.subscription_id, "11111111-1111-4111-8111-111111111111");
  EXPECT_EQ(r.resource_group, "rg1");
  EXPECT_EQ(r.name, "web");
  EXPECT_EQ(r.Query("api-version"), "2023-05-01");
}

TEST(RoutesTest, FixedWordsAreCaseInsensitive) {
  Route r = Ok("GET",
               "/SUBSCRIPTIONS/s/resourcegroups/My.RG/Providers/microsoft.containerinstance/CONTAINERGROUPS/web");
  EXPECT_EQ(r.kind, RouteKind::kGroup);
  EXPECT_EQ(r.resource_group, "My.RG");
}

TEST(RoutesTest, ListsAndOperations) {
  EXPECT_EQ(Ok("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups").kind,
            RouteKind::kGroupsInResourceGroup);
  EXPECT_EQ(Ok("GET", "/subscriptions/s/providers/Microsoft.ContainerInstance/containerGroups?$skipToken=a%3D").Query(
                "$skipToken"),
            "a=");
  Route op = Ok("GET", "/subscriptions/s/providers/Microsoft.ContainerInstance/locations/local/operations/abc");
  EXPECT_EQ(op.kind, RouteKind::kOperationStatus);
  EXPECT_EQ(op.operation_id, "abc");
  EXPECT_EQ(Ok("GET", "/subscriptions/s/providers/Microsoft.ContainerInstance/locations/local/operationResults/x").kind,
            RouteKind::kOperationResult);
}

TEST(RoutesTest, AccountRoutesAndGenericResourcePaths) {
  EXPECT_EQ(Ok("GET", "/subscriptions?api-version=2022-12-01").kind, RouteKind::kSubscriptions);
  EXPECT_EQ(Ok("GET", "/tenants").kind, RouteKind::kTenants);
  EXPECT_EQ(Ok("GET", "/subscriptions/s").kind, RouteKind::kSubscription);
  Route rg = Ok("HEAD", "/subscriptions/s/resourcegroups/demo");
  EXPECT_EQ(rg.kind, RouteKind::kResourceGroup);
  EXPECT_EQ(rg.resource_group, "demo");
  Route generic = Ok("GET", "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ContainerInstance//containerGroups/web");
  EXPECT_EQ(generic.kind, RouteKind::kGroup);
  EXPECT_EQ(generic.name, "web");
}

TEST(RoutesTest, PercentDecodesNames) {
  Route r = Ok("GET", "/subscriptions/s/resourceGroups/rg%28a%29/providers/Microsoft.ContainerInstance/containerGroups/w");
  EXPECT_EQ(r.resource_group, "rg(a)");
}

TEST(RoutesTest, RejectsUnknownPathsMethodsAndBadEscapes) {
  EXPECT_EQ(Err("GET", "/"), ErrorKind::kRouteNotFound);
  EXPECT_EQ(Err("POST", "/subscriptions"), ErrorKind::kMethodNotAllowed);
  EXPECT_EQ(Err("GET", "/tenants/t"), ErrorKind::kRouteNotFound);
  EXPECT_EQ(Err("DELETE", "/subscriptions/s/resourceGroups/rg"), ErrorKind::kMethodNotAllowed);
  EXPECT_EQ(Err("GET", "/subscriptions/s/resourceGroups"), ErrorKind::kRouteNotFound);
  EXPECT_EQ(Err("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/x"),
            ErrorKind::kRouteNotFound);
  EXPECT_EQ(Err("GET", kGroupPath + "/extra/segments"), ErrorKind::kRouteNotFound);
  EXPECT_EQ(Err("GET", "/subscriptions//resourceGroups"), ErrorKind::kRouteNotFound);
  EXPECT_EQ(Err("GET", "/subscriptions/s/resourceGroups//providers"), ErrorKind::kRouteNotFound);
  EXPECT_EQ(Err("POST", kGroupPath), ErrorKind::kMethodNotAllowed);
  EXPECT_EQ(Err("DELETE", "/subscriptions/s/providers/Microsoft.ContainerInstance/containerGroups"),
            ErrorKind::kMethodNotAllowed);
  EXPECT_EQ(Err("GET", kGroupPath + "%zz"), ErrorKind::kBadHttpRequest);
  EXPECT_EQ(Err("GET", kGroupPath + "?a=%4"), ErrorKind::kBadHttpRequest);
  EXPECT_EQ(Err("GET", "relative/path"), ErrorKind::kBadHttpRequest);
}

TEST(RoutesTest, PercentEncodeRoundTrips) {
  std::string decoded;
  ASSERT_TRUE(PercentDecode(PercentEncode("a b/c=d&e"), decoded));
  EXPECT_EQ(decoded, "a b/c=d&e");
}

}  // namespace
}  // namespace skiff::gateway
