// ARM property names match case-insensitively; unknown properties are ignored; values keep
// their types; map keys (tags) are data and keep their case.
#include <gtest/gtest.h>

#include "skiff/armjson/arm_json.h"
#include "skiff/containerinstance/v1/container_group.pb.h"

namespace skiff::armjson {
namespace {

namespace ci = containerinstance::v1;

TEST(ArmJsonTest, ExactNamesParse) {
  ci::ContainerGroup group;
  std::string error;
  ASSERT_TRUE(ParseArmJson(R"({"location":"local","properties":{"osType":"Linux"}})", &group, &error)) << error;
  EXPECT_EQ(group.location(), "local");
  EXPECT_EQ(group.properties().os_type(), "Linux");
}

TEST(ArmJsonTest, NamesMatchIgnoringCaseAndUnknownOnesAreIgnored) {
  // As Azure's YAML examples write it.
  const std::string doc = R"({"apiVersion":"2019-12-01","Location":"local","type":"Microsoft.ContainerInstance/containerGroups",
    "tags":{"MixedCase":"Kept"},
    "properties":{"OSType":"Linux","restartpolicy":"Never","containers":[{"name":"app","properties":{
      "image":"busybox","resources":{"requests":{"cpu":1,"memoryInGb":1.5}},"ports":[{"Port":80,"protocol":"tcp"}],
      "environmentVariables":[{"name":"A","value":"b"}],"somethingNew":{"x":1}}}]}})";
  ci::ContainerGroup group;
  std::string error;
  ASSERT_TRUE(ParseArmJson(doc, &group, &error)) << error;
  EXPECT_EQ(group.location(), "local");
  EXPECT_EQ(group.properties().os_type(), "Linux");
  EXPECT_EQ(group.properties().restart_policy(), "Never");
  ASSERT_EQ(group.properties().containers_size(), 1);
  const auto& props = group.properties().containers(0).properties();
  EXPECT_DOUBLE_EQ(props.resources().requests().memory_in_gb(), 1.5);
  EXPECT_DOUBLE_EQ(props.resources().requests().cpu(), 1);
  ASSERT_EQ(props.ports_size(), 1);
  EXPECT_EQ(props.ports(0).port(), 80);
  EXPECT_EQ(props.environment_variables(0).value(), "b");
  EXPECT_EQ(group.tags().at("MixedCase"), "Kept");
}

TEST(ArmJsonTest, RefusesMalformedJsonAndWrongTypes) {
  ci::ContainerGroup group;
  std::string error;
  EXPECT_FALSE(ParseArmJson("{not json", &group, &error));
  EXPECT_FALSE(error.empty());
  error.clear();
  EXPECT_FALSE(ParseArmJson(R"({"Properties":{"containers":"not a list"}})", &group, &error));
  EXPECT_FALSE(error.empty());
}

}  // namespace
}  // namespace skiff::armjson
