#include "skiff/gateway/validation.h"

#include <gtest/gtest.h>

#include <functional>

#include "test_support.h"

namespace skiff::gateway {
namespace ci = containerinstance::v1;
namespace {

ValidationLimits Limits() {
  ValidationLimits limits;
  limits.reserved_ports = {10250};
  return limits;
}

ci::Container& First(ci::ContainerGroup& g) { return *g.mutable_properties()->mutable_containers(0); }

struct RejectionCase {
  std::string name;
  std::function<void(ci::ContainerGroup&)> mutate;
  ErrorKind expected;
  int status;
};

void PrintTo(const RejectionCase& c, std::ostream* os) { *os << c.name; }

class RejectionTest : public ::testing::TestWithParam<RejectionCase> {};

TEST_P(RejectionTest, RejectsWithCodeAndStatus) {
  ci::ContainerGroup group = LoadGroup("aci_minimal.json");
  GetParam().mutate(group);
  auto error = ValidateAndNormalize(group, Limits());
  ASSERT_TRUE(error.has_value()) << GetParam().name;
  EXPECT_EQ(error->kind, GetParam().expected) << GetParam().name << ": " << error->message;
  EXPECT_EQ(HttpStatusFor(error->kind), GetParam().status);
  EXPECT_FALSE(error->message.empty());
}

void AddPort(ci::ContainerGroup& g, int port) {
  First(g).mutable_properties()->add_ports()->set_port(port);
  auto* ip = g.mutable_properties()->mutable_ip_address();
  ip->set_type("Public");
  ip->add_ports()->set_port(port);
}

void AddShare(ci::ContainerGroup& g, const std::string& account, const std::string& share, const std::string& key) {
  auto* v = g.mutable_properties()->add_volumes();
  v->set_name("share");
  v->mutable_azure_file()->set_storage_account_name(account);
  v->mutable_azure_file()->set_share_name(share);
  v->mutable_azure_file()->set_storage_account_key(key);
}

void AddRepo(ci::ContainerGroup& g, const std::string& repository, const std::string& directory) {
  auto* v = g.mutable_properties()->add_volumes();
  v->set_name("src");
  v->mutable_git_repo()->set_repository(repository);
  v->mutable_git_repo()->set_directory(directory);
}

void MountEmptyDir(ci::ContainerGroup& g, const std::string& path) {
  auto* v = g.mutable_properties()->add_volumes();
  v->set_name("scratch");
  v->mutable_empty_dir();
  auto* m = First(g).mutable_properties()->add_volume_mounts();
  m->set_name("scratch");
  m->set_mount_path(path);
}

INSTANTIATE_TEST_SUITE_P(
    Table, RejectionTest,
    ::testing::Values(
        RejectionCase{"missing location", [](auto& g) { g.clear_location(); }, ErrorKind::kInvalidLocation, 400},
        RejectionCase{"unknown location", [](auto& g) { g.set_location("westeurope"); }, ErrorKind::kInvalidLocation, 400},
        RejectionCase{"no containers", [](auto& g) { g.mutable_properties()->clear_containers(); },
                      ErrorKind::kMissingContainers, 400},
        RejectionCase{"upper-case container name", [](auto& g) { First(g).set_name("Web"); },
                      ErrorKind::kInvalidContainerName, 400},
        RejectionCase{"container name with double hyphen", [](auto& g) { First(g).set_name("a--b"); },
                      ErrorKind::kInvalidContainerName, 400},
        RejectionCase{"container name ending in hyphen", [](auto& g) { First(g).set_name("web-"); },
                      ErrorKind::kInvalidContainerName, 400},
        RejectionCase{"container name of 64 characters", [](auto& g) { First(g).set_name(std::string(64, 'a')); },
                      ErrorKind::kInvalidContainerName, 400},
        RejectionCase{"duplicate container names",
                      [](auto& g) { *g.mutable_properties()->add_containers() = First(g); },
                      ErrorKind::kDuplicateContainerName, 400},
        RejectionCase{"init container named like an app container",
                      [](auto& g) { g.mutable_properties()->mutable_init_containers(0)->set_name("hello"); },
                      ErrorKind::kDuplicateContainerName, 400},
        RejectionCase{"empty image", [](auto& g) { First(g).mutable_properties()->set_image(""); },
                      ErrorKind::kInvalidImage, 400},
        RejectionCase{"image with upper-case repository",
                      [](auto& g) { First(g).mutable_properties()->set_image("Library/Nginx"); },
                      ErrorKind::kInvalidImage, 400},
        RejectionCase{"image with bad digest",
                      [](auto& g) { First(g).mutable_properties()->set_image("nginx@sha256:abc"); },
                      ErrorKind::kInvalidImage, 400},
        RejectionCase{"image with spaces", [](auto& g) { First(g).mutable_properties()->set_image("ng inx"); },
                      ErrorKind::kInvalidImage, 400},
        RejectionCase{"missing cpu request",
                      [](auto& g) { First(g).mutable_properties()->mutable_resources()->mutable_requests()->clear_cpu(); },
                      ErrorKind::kInvalidResourceRequests, 400},
        RejectionCase{"zero memory",
                      [](auto& g) {
                        First(g).mutable_properties()->mutable_resources()->mutable_requests()->set_memory_in_gb(0);
                      },
                      ErrorKind::kInvalidResourceRequests, 400},
        RejectionCase{"negative cpu",
                      [](auto& g) { First(g).mutable_properties()->mutable_resources()->mutable_requests()->set_cpu(-1); },
                      ErrorKind::kInvalidResourceRequests, 400},
        RejectionCase{"cpu finer than 0.01",
                      [](auto& g) {
                        First(g).mutable_properties()->mutable_resources()->mutable_requests()->set_cpu(0.001);
                      },
                      ErrorKind::kInvalidResourceRequests, 400},
        RejectionCase{"limit below request",
                      [](auto& g) { First(g).mutable_properties()->mutable_resources()->mutable_limits()->set_cpu(0.1); },
                      ErrorKind::kInvalidResourceRequests, 400},
        RejectionCase{"cpu over the group maximum",
                      [](auto& g) {
                        auto* r = First(g).mutable_properties()->mutable_resources();
                        r->mutable_requests()->set_cpu(5);
                        r->clear_limits();
                      },
                      ErrorKind::kResourceRequestsExceedLimit, 400},
        RejectionCase{"memory over the group maximum",
                      [](auto& g) {
                        auto* r = First(g).mutable_properties()->mutable_resources();
                        r->mutable_requests()->set_memory_in_gb(16.5);
                        r->clear_limits();
                      },
                      ErrorKind::kResourceRequestsExceedLimit, 400},
        RejectionCase{"sum of containers over the maximum",
                      [](auto& g) {
                        auto* r = First(g).mutable_properties()->mutable_resources();
                        r->mutable_requests()->set_cpu(3);
                        r->clear_limits();
                        auto& second = *g.mutable_properties()->add_containers();
                        second = First(g);
                        second.set_name("second");
                      },
                      ErrorKind::kResourceRequestsExceedLimit, 400},
        RejectionCase{"six ports on the IP",
                      [](auto& g) {
                        for (int p = 81; p <= 86; ++p) AddPort(g, p);
                      },
                      ErrorKind::kTooManyPorts, 400},
        RejectionCase{"reserved port", [](auto& g) { AddPort(g, 10250); }, ErrorKind::kReservedPort, 400},
        RejectionCase{"port zero", [](auto& g) { AddPort(g, 0); }, ErrorKind::kInvalidPort, 400},
        RejectionCase{"port above 65535", [](auto& g) { AddPort(g, 70000); }, ErrorKind::kInvalidPort, 400},
        RejectionCase{"IP port no container exposes",
                      [](auto& g) {
                        auto* ip = g.mutable_properties()->mutable_ip_address();
                        ip->add_ports()->set_port(8080);
                      },
                      ErrorKind::kInvalidPort, 400},
        RejectionCase{"bad protocol",
                      [](auto& g) {
                        AddPort(g, 80);
                        g.mutable_properties()->mutable_ip_address()->mutable_ports(0)->set_protocol("SCTP");
                      },
                      ErrorKind::kInvalidEnum, 400},
        RejectionCase{"restart policy", [](auto& g) { g.mutable_properties()->set_restart_policy("Sometimes"); },
                      ErrorKind::kInvalidEnum, 400},
        RejectionCase{"os type", [](auto& g) { g.mutable_properties()->set_os_type("Plan9"); }, ErrorKind::kInvalidEnum,
                      400},
        RejectionCase{"windows", [](auto& g) { g.mutable_properties()->set_os_type("Windows"); },
                      ErrorKind::kUnsupportedOsType, 400},
        RejectionCase{"priority", [](auto& g) { g.mutable_properties()->set_priority("Urgent"); },
                      ErrorKind::kInvalidEnum, 400},
        RejectionCase{"sku", [](auto& g) { g.mutable_properties()->set_sku("Huge"); }, ErrorKind::kInvalidEnum, 400},
        RejectionCase{"isolation", [](auto& g) { g.mutable_properties()->set_isolation("Hypervisor"); },
                      ErrorKind::kInvalidEnum, 400},
        RejectionCase{"mount of undefined volume",
                      [](auto& g) {
                        auto* m = First(g).mutable_properties()->add_volume_mounts();
                        m->set_name("nope");
                        m->set_mount_path("/data");
                      },
                      ErrorKind::kUndefinedVolume, 400},
        RejectionCase{"volume with two kinds",
                      [](auto& g) {
                        auto* v = g.mutable_properties()->add_volumes();
                        v->set_name("data");
                        v->mutable_empty_dir();
                        v->mutable_git_repo()->set_repository("https://example.invalid/r.git");
                      },
                      ErrorKind::kInvalidVolume, 400},
        RejectionCase{"relative mount path",
                      [](auto& g) {
                        auto* v = g.mutable_properties()->add_volumes();
                        v->set_name("data");
                        v->mutable_empty_dir();
                        auto* m = First(g).mutable_properties()->add_volume_mounts();
                        m->set_name("data");
                        m->set_mount_path("data");
                      },
                      ErrorKind::kInvalidVolume, 400},
        RejectionCase{"azureFile share name with traversal",
                      [](auto& g) { AddShare(g, "skiffdata", "../../..", "key"); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"azureFile account name with traversal",
                      [](auto& g) { AddShare(g, "../../etc", "data", "key"); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"azureFile account name with upper case",
                      [](auto& g) { AddShare(g, "AccountName", "data", "key"); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"azureFile share name with double hyphen",
                      [](auto& g) { AddShare(g, "skiffdata", "da--ta", "key"); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"azureFile without key", [](auto& g) { AddShare(g, "skiffdata", "data", ""); },
                      ErrorKind::kInvalidVolume, 400},
        RejectionCase{"gitRepo absolute directory",
                      [](auto& g) { AddRepo(g, "https://example.test/r.git", "/etc"); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"gitRepo directory with dot-dot",
                      [](auto& g) { AddRepo(g, "https://example.test/r.git", "a/../../x"); }, ErrorKind::kInvalidVolume,
                      400},
        RejectionCase{"gitRepo local path", [](auto& g) { AddRepo(g, "/srv/repo", ""); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"gitRepo file URL", [](auto& g) { AddRepo(g, "file:///etc", ""); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"gitRepo option as URL", [](auto& g) { AddRepo(g, "--upload-pack=touch /x", ""); },
                      ErrorKind::kInvalidVolume, 400},
        RejectionCase{"gitRepo ext transport", [](auto& g) { AddRepo(g, "ext::sh -c id", ""); }, ErrorKind::kInvalidVolume,
                      400},
        RejectionCase{"gitRepo plain http to an unlisted host",
                      [](auto& g) { AddRepo(g, "http://127.0.0.1:4222/r.git", ""); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"mount path /proc", [](auto& g) { MountEmptyDir(g, "/proc"); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"mount path beneath /sys", [](auto& g) { MountEmptyDir(g, "/sys/fs/cgroup"); },
                      ErrorKind::kInvalidVolume, 400},
        RejectionCase{"mount path /dev/shm", [](auto& g) { MountEmptyDir(g, "/dev/shm"); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"mount path root", [](auto& g) { MountEmptyDir(g, "/"); }, ErrorKind::kInvalidVolume, 400},
        RejectionCase{"mount path with dot-dot", [](auto& g) { MountEmptyDir(g, "/data/../proc"); },
                      ErrorKind::kInvalidVolume, 400},
        RejectionCase{"secret file name with slash",
                      [](auto& g) {
                        auto* v = g.mutable_properties()->add_volumes();
                        v->set_name("creds");
                        (*v->mutable_secret())["../etc/passwd"] = "eA==";
                      },
                      ErrorKind::kInvalidVolume, 400},
        RejectionCase{"env var with value and secureValue",
                      [](auto& g) {
                        First(g).mutable_properties()->mutable_environment_variables(0)->set_secure_value("x");
                      },
                      ErrorKind::kInvalidEnvironmentVariable, 400},
        RejectionCase{"env var defined twice",
                      [](auto& g) {
                        auto* e = First(g).mutable_properties()->add_environment_variables();
                        e->set_name("PLAIN");
                        e->set_value("again");
                      },
                      ErrorKind::kInvalidEnvironmentVariable, 400},
        RejectionCase{"env var name with =",
                      [](auto& g) { First(g).mutable_properties()->mutable_environment_variables(0)->set_name("A=B"); },
                      ErrorKind::kInvalidEnvironmentVariable, 400},
        RejectionCase{"probe with two kinds",
                      [](auto& g) {
                        First(g).mutable_properties()->mutable_liveness_probe()->mutable_tcp_socket()->set_port(80);
                      },
                      ErrorKind::kInvalidProbe, 400},
        RejectionCase{"dns label on private IP",
                      [](auto& g) {
                        AddPort(g, 80);
                        g.mutable_properties()->mutable_ip_address()->set_type("Private");
                        g.mutable_properties()->mutable_ip_address()->set_dns_name_label("web");
                      },
                      ErrorKind::kInvalidIpAddress, 400},
        RejectionCase{"invalid dns label",
                      [](auto& g) {
                        AddPort(g, 80);
                        g.mutable_properties()->mutable_ip_address()->set_dns_name_label("Web_1");
                      },
                      ErrorKind::kInvalidIpAddress, 400},
        RejectionCase{"two zones",
                      [](auto& g) {
                        g.add_zones("1");
                        g.add_zones("2");
                      },
                      ErrorKind::kInvalidZones, 400},
        RejectionCase{"51 tags",
                      [](auto& g) {
                        for (int i = 0; i < 51; ++i) (*g.mutable_tags())["t" + std::to_string(i)] = "v";
                      },
                      ErrorKind::kInvalidTags, 400},
        RejectionCase{"registry credential without server",
                      [](auto& g) { g.mutable_properties()->add_image_registry_credentials()->set_username("u"); },
                      ErrorKind::kInvalidImage, 400}),
    [](const ::testing::TestParamInfo<RejectionCase>& info) {
      std::string name;
      for (char c : info.param.name) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return name;
    });

TEST(ValidationTest, AcceptsAciExamplesAndFillsDefaults) {
  for (const char* file : {"aci_minimal.json", "aci_create_full.json"}) {
    ci::ContainerGroup group = LoadGroup(file);
    auto error = ValidateAndNormalize(group, Limits());
    EXPECT_FALSE(error.has_value()) << file << ": " << (error ? error->message : "");
  }
  ci::ContainerGroup group = LoadGroup("aci_minimal.json");
  group.mutable_properties()->clear_os_type();
  group.mutable_properties()->set_restart_policy("onfailure");
  ASSERT_FALSE(ValidateAndNormalize(group, Limits()).has_value());
  EXPECT_EQ(group.properties().os_type(), "Linux");
  EXPECT_EQ(group.properties().restart_policy(), "OnFailure");
  EXPECT_EQ(group.properties().isolation(), "");  // absent stays absent (ACI's clients never send it)
  group.mutable_properties()->set_isolation("microvm");
  ASSERT_FALSE(ValidateAndNormalize(group, Limits()).has_value());
  EXPECT_EQ(group.properties().isolation(), "MicroVM");
}

TEST(ValidationTest, TheIsolationPolicyFillsTheDefaultAndRequiresMicroVmWhereAsked) {
  ValidationLimits limits = Limits();
  limits.microvm_subscriptions = {"sub-strict"};
  ci::ContainerGroup plain = LoadGroup("aci_minimal.json");
  EXPECT_FALSE(ApplyIsolationPolicy(plain, "sub-open", limits).has_value());
  EXPECT_EQ(plain.properties().isolation(), "") << "the default Container stays implied";
  ci::ContainerGroup strict = LoadGroup("aci_minimal.json");
  EXPECT_FALSE(ApplyIsolationPolicy(strict, "sub-strict", limits).has_value());
  EXPECT_EQ(strict.properties().isolation(), "MicroVM");
  ci::ContainerGroup refused = LoadGroup("aci_minimal.json");
  refused.mutable_properties()->set_isolation("Container");
  auto error = ApplyIsolationPolicy(refused, "sub-strict", limits);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind, ErrorKind::kIsolationRequired);
  EXPECT_EQ(HttpStatusFor(error->kind), 400);
  EXPECT_EQ(ArmCodeFor(error->kind), "IsolationRequired");
  EXPECT_EQ(error->target, "properties.isolation");
  limits.default_isolation = "MicroVM";
  ci::ContainerGroup by_default = LoadGroup("aci_minimal.json");
  EXPECT_FALSE(ApplyIsolationPolicy(by_default, "sub-open", limits).has_value());
  EXPECT_EQ(by_default.properties().isolation(), "MicroVM");
  ci::ContainerGroup chosen = LoadGroup("aci_minimal.json");
  chosen.mutable_properties()->set_isolation("Container");
  EXPECT_FALSE(ApplyIsolationPolicy(chosen, "sub-open", limits).has_value());
  EXPECT_EQ(chosen.properties().isolation(), "Container") << "a group may still ask for Container";
}

TEST(ValidationTest, VolumeErrorsNameTheField) {
  ci::ContainerGroup group = LoadGroup("aci_minimal.json");
  AddShare(group, "skiffdata", "../../..", "key");
  auto error = ValidateAndNormalize(group, Limits());
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->target, "properties.volumes[0].azureFile.shareName");
  EXPECT_NE(error->message.find("shareName"), std::string::npos) << error->message;

  ci::ContainerGroup listed = LoadGroup("aci_minimal.json");
  AddRepo(listed, "http://git.example.test:8080/r.git", "site");
  ValidationLimits limits = Limits();
  limits.git_insecure_hosts = {"git.example.test:8080"};
  EXPECT_FALSE(ValidateAndNormalize(listed, limits).has_value());
}

TEST(ValidationTest, ImageReferences) {
  for (const char* ok : {"nginx", "nginx:1.25", "library/nginx", "docker.io/library/nginx:latest",
                         "127.0.0.1:5000/skiff/hello:1", "mcr.microsoft.com/azuredocs/aci-helloworld",
                         "registry.local/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}) {
    EXPECT_TRUE(IsValidImageReference(ok)) << ok;
  }
  for (const char* bad : {"", "UPPER/case", "nginx:", ":tag", "a//b", "-a", "nginx:tag with space",
                          "host:port/x", "a@sha256:xyz"}) {
    EXPECT_FALSE(IsValidImageReference(bad)) << bad;
  }
}

TEST(ValidationTest, Names) {
  EXPECT_TRUE(IsValidAciName("a"));
  EXPECT_TRUE(IsValidAciName("web-1"));
  EXPECT_FALSE(IsValidAciName(""));
  EXPECT_FALSE(IsValidAciName("-a"));
  EXPECT_FALSE(IsValidAciName("a_b"));
  EXPECT_TRUE(IsValidResourceGroupName("My.Group_(1)-x"));
  EXPECT_FALSE(IsValidResourceGroupName("ends."));
  EXPECT_FALSE(IsValidResourceGroupName("has space"));
  EXPECT_FALSE(IsValidResourceGroupName(std::string(91, 'a')));
}

}  // namespace
}  // namespace skiff::gateway
