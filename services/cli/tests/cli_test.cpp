#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "skiff/cli/cli.h"

namespace skiff::cli {
namespace {

TEST(CliTest, CredentialsComeFromFlagsThenEnvironmentThenTheEnvFile) {
  const auto dir = std::filesystem::temp_directory_path() / ("skiff-cli-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / ".skiff");
  std::filesystem::create_directories(dir / "deeper/still");
  std::ofstream(dir / ".skiff/env") << "SKIFF_URL=https://127.0.0.1:8443/\nSKIFF_TOKEN=file-token\n"
                                       "SKIFF_SUBSCRIPTION=sub-from-file\nSKIFF_CA=/ca.crt\n";
  auto none = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto env = [](const std::string& key) -> std::optional<std::string> {
    if (key == "SKIFF_TOKEN") return std::string("env-token");
    return std::nullopt;
  };
  auto found = ResolveCredentials({{"subscription", "sub-from-flag"}}, env, (dir / "deeper/still").string(), nullptr);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->url, "https://127.0.0.1:8443");  // trailing slash dropped
  EXPECT_EQ(found->token, "env-token");
  EXPECT_EQ(found->subscription, "sub-from-flag");
  EXPECT_EQ(found->ca_file, "/ca.crt");
  std::string missing;
  EXPECT_FALSE(ResolveCredentials({}, none, "/", &missing));
  EXPECT_EQ(missing, "--url/SKIFF_URL, --token/SKIFF_TOKEN, --subscription/SKIFF_SUBSCRIPTION");
  std::filesystem::remove_all(dir);
}

TEST(CliTest, CreateBuildsTheGroupAsAzContainerDoes) {
  CreateOptions options;
  options.name = "web";
  options.image = "127.0.0.1:5000/skiff/httpd:1";
  options.cpu = 0.5;
  options.memory_gb = 0.75;
  options.ports = {80, 8080};
  options.ip_address = "Public";
  options.dns_name_label = "demo";
  options.command_line = "httpd -f -p 80";
  options.environment = {"MODE=demo"};
  options.secure_environment = {"KEY=s3cret"};
  options.priority = "Spot";
  auto built = BuildGroup(options, "", "local");
  ASSERT_TRUE(std::holds_alternative<containerinstance::v1::ContainerGroup>(built));
  const auto& group = std::get<0>(built);
  EXPECT_EQ(group.location(), "local");
  const auto& container = group.properties().containers(0);
  EXPECT_EQ(container.name(), "web");
  EXPECT_DOUBLE_EQ(container.properties().resources().requests().cpu(), 0.5);
  EXPECT_EQ(container.properties().command_size(), 4);
  EXPECT_EQ(container.properties().environment_variables(1).secure_value(), "s3cret");
  EXPECT_EQ(group.properties().ip_address().ports_size(), 2);
  EXPECT_EQ(group.properties().ip_address().dns_name_label(), "demo");
  EXPECT_EQ(group.properties().priority(), "Spot");

  options.environment = {"no-equals"};
  EXPECT_EQ(std::get<std::string>(BuildGroup(options, "", "local")), "environment variables are NAME=VALUE, got 'no-equals'");
  CreateOptions empty;
  EXPECT_TRUE(std::holds_alternative<std::string>(BuildGroup(empty, "", "local")));
  EXPECT_TRUE(std::holds_alternative<std::string>(BuildGroup(empty, "{not json", "local")));
  auto from_file = BuildGroup(empty, R"({"location":"east","properties":{"containers":[{"name":"a","properties":{"image":"x"}}]}})", "local");
  ASSERT_TRUE(std::holds_alternative<containerinstance::v1::ContainerGroup>(from_file));
  EXPECT_EQ(std::get<0>(from_file).location(), "east");
  EXPECT_EQ(std::get<0>(from_file).properties().restart_policy(), "Always");
}

// The YAML of Azure's `az container create -f` documentation (note `memoryInGb`).
TEST(CliTest, CreateReadsAzYamlFiles) {
  const std::string yaml = R"(apiVersion: 2019-12-01
location: local
name: yaml-app
properties:
  containers:
  - name: app
    properties:
      image: 127.0.0.1:5000/skiff/httpd:1
      command: ["/bin/httpd", "-f", "-p", "8080"]
      resources:
        requests:
          cpu: 1
          memoryInGb: 1.5
      ports:
      - port: 8080
      environmentVariables:
      - name: VERSION
        value: "1.0"     # quoted: stays a string
      - name: SECRET
        secureValue: 'yes'
  osType: Linux
  restartPolicy: OnFailure
  ipAddress:
    type: Public
    ports:
    - protocol: tcp
      port: 8080
tags: {exampleTag: tutorial}
type: Microsoft.ContainerInstance/containerGroups
)";
  CreateOptions options;
  auto built = BuildGroup(options, yaml, "elsewhere");
  ASSERT_TRUE(std::holds_alternative<containerinstance::v1::ContainerGroup>(built)) << std::get<std::string>(built);
  const auto& group = std::get<0>(built);
  EXPECT_EQ(group.name(), "yaml-app");
  EXPECT_EQ(group.location(), "local");
  EXPECT_EQ(group.tags().at("exampleTag"), "tutorial");
  EXPECT_EQ(group.properties().restart_policy(), "OnFailure");
  const auto& props = group.properties().containers(0).properties();
  EXPECT_DOUBLE_EQ(props.resources().requests().memory_in_gb(), 1.5);
  EXPECT_EQ(props.command_size(), 4);
  EXPECT_EQ(props.ports(0).port(), 8080);
  EXPECT_EQ(props.environment_variables(0).value(), "1.0");
  EXPECT_EQ(props.environment_variables(1).secure_value(), "yes");
  EXPECT_EQ(group.properties().ip_address().ports(0).port(), 8080);

  for (const std::string bad : {"- just\n- a list\n", "key: [unclosed\n", "properties:\n  containers: 5\n"}) {
    auto refused = BuildGroup(options, bad, "local");
    ASSERT_TRUE(std::holds_alternative<std::string>(refused)) << bad;
    EXPECT_FALSE(std::get<std::string>(refused).empty());
  }
}

TEST(CliTest, VnetAndSubnetNameTheSubnetAsAzDoes) {
  Credentials credentials;
  credentials.subscription = "sub";
  EXPECT_EQ(std::get<0>(SubnetId(credentials, "rg", "net", "front")),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/net/subnets/front");
  const std::string id = "/subscriptions/other/resourceGroups/x/providers/Microsoft.Network/virtualNetworks/n/subnets/s";
  EXPECT_EQ(std::get<0>(SubnetId(credentials, "rg", "", id)), id);
  EXPECT_EQ(std::get<0>(SubnetId(credentials, "rg", "", "")), "");
  EXPECT_EQ(SubnetId(credentials, "rg", "", "front").index(), 1u);
  EXPECT_EQ(SubnetId(credentials, "rg", "net", "").index(), 1u);

  CreateOptions options;
  options.name = "app";
  options.image = "x";
  options.ports = {80};
  options.dns_name_label = "";
  options.subnet_id = id;
  auto group = std::get<0>(BuildGroup(options, "", "local"));
  ASSERT_EQ(group.properties().subnet_ids_size(), 1);
  EXPECT_EQ(group.properties().subnet_ids(0).id(), id);
}

TEST(CliTest, ResizeMessageIsXtermsWindowSizeSequence) {
  EXPECT_EQ(ResizeMessage(40, 100), "\x1b[8;40;100t");
}

TEST(CliTest, ErrorsPrintTheArmCodeAndMessage) {
  EXPECT_EQ(ErrorText({404, R"({"error":{"code":"ResourceNotFound","message":"The group 'x' was not found."}})"}),
            "ResourceNotFound: The group 'x' was not found.");
  EXPECT_EQ(ErrorText({502, "bad gateway"}), "HTTP 502: bad gateway");
}

TEST(CliTest, TableShowsStateAndSizes) {
  auto group = ParseGroup(R"({"id":"/subscriptions/s/resourceGroups/demo/providers/Microsoft.ContainerInstance/containerGroups/web",
    "name":"web","properties":{"provisioningState":"Succeeded","instanceView":{"state":"Running"},
    "containers":[{"name":"web","properties":{"image":"img","resources":{"requests":{"cpu":1,"memoryInGB":1.5}}}}]}})");
  ASSERT_TRUE(group);
  const std::string table = GroupTable({*group});
  EXPECT_NE(table.find("web"), std::string::npos);
  EXPECT_NE(table.find("demo"), std::string::npos);
  EXPECT_NE(table.find("Running"), std::string::npos);
  EXPECT_NE(table.find("1 core/1.5 gb"), std::string::npos) << table;
}

}  // namespace
}  // namespace skiff::cli
