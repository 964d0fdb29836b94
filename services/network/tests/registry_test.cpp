#include "skiff/network/registry.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "fake_network_store.h"

using namespace skiff::network;

namespace {

constexpr const char* kSub = "00000000-0000-0000-0000-000000000001";
constexpr const char* kOtherSub = "00000000-0000-0000-0000-000000000002";

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() : registry_(store_, Options(), [this] { return now_; }) {}
  static RegistryOptions Options() {
    RegistryOptions options;
    options.public_pool = *Ipv4Prefix::Parse("127.100.0.0/30");  // two public addresses: .1 and .2
    return options;
  }

  v1::VnetApiReply PutVnet(const std::string& name, const std::string& body, const std::string& sub = kSub) {
    v1::VnetApiRequest request;
    request.set_method("PUT");
    request.set_subscription_id(sub);
    request.set_resource_group("rg");
    request.set_name(name);
    request.set_body(body);
    return registry_.Vnets(request);
  }
  static std::string VnetBody(const std::string& space, const std::string& subnets) {
    return R"({"location":"westeurope","properties":{"addressSpace":{"addressPrefixes":[")" + space +
           R"("]},"subnets":[)" + subnets + "]}}";
  }
  static std::string SubnetJson(const std::string& name, const std::string& prefix) {
    return R"({"name":")" + name + R"(","properties":{"addressPrefix":")" + prefix + R"("}})";
  }
  static std::string SubnetId(const std::string& vnet, const std::string& subnet, const std::string& sub = kSub) {
    return "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/" + vnet +
           "/subnets/" + subnet;
  }
  v1::ClaimReply Claim(const std::string& group_id, const std::string& name, const std::string& subnet_id = "",
                       const std::string& ip_type = "", const std::string& label = "", const std::string& scope = "",
                       const std::string& sub = kSub, const std::string& rg = "rg") {
    v1::ClaimRequest request;
    request.mutable_group()->set_group_id(group_id);
    request.mutable_group()->set_subscription_id(sub);
    request.mutable_group()->set_resource_group(rg);
    request.mutable_group()->set_name(name);
    request.set_location("westeurope");
    if (!subnet_id.empty()) request.add_subnet_ids(subnet_id);
    if (!ip_type.empty()) {
      auto* ip = request.mutable_ip_address();
      ip->set_type(ip_type);
      ip->set_dns_name_label(label);
      ip->set_auto_generated_domain_name_label_scope(scope);
      auto* port = ip->add_ports();
      port->set_port(80);
      port->set_protocol("TCP");
    }
    return registry_.Claim(request);
  }
  static std::string ErrorCode(const std::string& body) {
    skiff::containerinstance::v1::ErrorResponse error;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(body, &error).ok()) << body;
    return error.error().code();
  }

  fakes::FakeNetworkStore store_;
  Millis now_ = 1'000'000;
  Registry registry_;
};

TEST_F(RegistryTest, CreatesReadsListsAndDeletesAVirtualNetwork) {
  auto created = PutVnet("vnet1", VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.0.0/24") + "," + SubnetJson("b", "10.1.1.0/24")));
  ASSERT_EQ(created.status(), 201) << created.body();
  v1::VirtualNetwork vnet;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(created.body(), &vnet).ok());
  EXPECT_EQ(vnet.id(), "/subscriptions/" + std::string(kSub) + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet1");
  EXPECT_EQ(vnet.properties().provisioning_state(), "Succeeded");
  ASSERT_EQ(vnet.properties().subnets_size(), 2);
  EXPECT_EQ(vnet.properties().subnets(1).id(), SubnetId("vnet1", "b"));
  EXPECT_EQ(PutVnet("vnet1", VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.0.0/24"))).status(), 200);

  v1::VnetApiRequest get;
  get.set_method("GET");
  get.set_subscription_id(kSub);
  get.set_resource_group("RG");  // ARM names are case-insensitive
  get.set_name("VNET1");
  EXPECT_EQ(registry_.Vnets(get).status(), 200);
  get.set_subnet("a");
  EXPECT_EQ(registry_.Vnets(get).status(), 200);
  get.set_subnet("b");  // removed by the second PUT
  EXPECT_EQ(registry_.Vnets(get).status(), 404);
  get.clear_subnet();
  get.clear_name();
  auto list = registry_.Vnets(get);
  EXPECT_NE(list.body().find("vnet1"), std::string::npos);

  v1::VnetApiRequest del = get;
  del.set_method("DELETE");
  del.set_name("vnet1");
  EXPECT_EQ(registry_.Vnets(del).status(), 200);
  EXPECT_EQ(registry_.Vnets(del).status(), 204);
  get.set_name("vnet1");
  EXPECT_EQ(ErrorCode(registry_.Vnets(get).body()), "ResourceNotFound");
}

TEST_F(RegistryTest, RejectsBadAddressPlans) {
  struct Case {
    std::string body;
    int status;
    std::string code;
  } cases[] = {
      {"{", 400, "InvalidRequestContent"},
      {R"({"properties":{}})", 400, "LocationRequired"},
      {VnetBody("10.1.0.0/33", ""), 400, "InvalidAddressPrefixFormat"},
      {VnetBody("10.1.0.1/16", ""), 400, "InvalidAddressPrefixFormat"},
      {R"({"location":"x","properties":{"addressSpace":{"addressPrefixes":[]}}})", 400, "AddressSpaceRequired"},
      {VnetBody("10.1.0.0/16", SubnetJson("a", "10.2.0.0/24")), 400, "NetcfgSubnetRangeOutsideVnet"},
      {VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.0.0/24") + "," + SubnetJson("b", "10.1.0.128/25")), 400,
       "NetcfgSubnetRangesOverlap"},
      {VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.0.0/24") + "," + SubnetJson("A", "10.1.1.0/24")), 400,
       "DuplicateResourceName"},
      {VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.0.0/30")), 400, "InvalidAddressPrefixFormat"},
      {VnetBody("10.240.0.0/16", SubnetJson("a", "10.240.0.0/24")), 400, "NetcfgSubnetRangesOverlap"},  // default pool
  };
  for (const auto& c : cases) {
    auto reply = PutVnet("v", c.body);
    EXPECT_EQ(reply.status(), c.status) << c.body;
    EXPECT_EQ(ErrorCode(reply.body()), c.code) << c.body;
  }
  EXPECT_EQ(ErrorCode(PutVnet("bad name!", VnetBody("10.1.0.0/16", "")).body()), "InvalidResourceName");
}

TEST_F(RegistryTest, SubnetsMayNotOverlapAnotherNetworksEvenInAnotherSubscription) {
  ASSERT_EQ(PutVnet("v1", VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.0.0/24"))).status(), 201);
  auto clash = PutVnet("v2", VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.0.0/25")), kOtherSub);
  EXPECT_EQ(clash.status(), 409);
  EXPECT_EQ(ErrorCode(clash.body()), "NetcfgSubnetRangesOverlap");
  EXPECT_EQ(PutVnet("v2", VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.1.0/24")), kOtherSub).status(), 201);
}

TEST_F(RegistryTest, GroupsGetDistinctAddressesThatStayAcrossClaimsAndFreeOnRelease) {
  auto a = Claim("g1", "web");
  auto b = Claim("g2", "db");
  ASSERT_TRUE(a.ok()) << a.error_message();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a.private_ip(), "10.240.0.4");  // the subscription's default network, after the reserved four
  EXPECT_EQ(b.private_ip(), "10.240.0.5");
  EXPECT_EQ(Claim("g1", "web").private_ip(), "10.240.0.4");  // an update keeps the address
  auto other = Claim("g3", "web", "", "", "", "", kOtherSub);
  EXPECT_EQ(other.private_ip(), "10.240.4.4");  // another subscription, another default network
  registry_.Release("g1");
  EXPECT_EQ(Claim("g4", "api").private_ip(), "10.240.0.4");  // freed and reused
}

TEST_F(RegistryTest, ClaimsInAVirtualNetworkSubnet) {
  ASSERT_EQ(PutVnet("v1", VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.0.0/29"))).status(), 201);
  auto a = Claim("g1", "web", SubnetId("v1", "a"));
  ASSERT_TRUE(a.ok()) << a.error_message();
  EXPECT_EQ(a.private_ip(), "10.1.0.4");
  EXPECT_TRUE(Claim("g2", "web2", SubnetId("v1", "a")).ok());
  EXPECT_TRUE(Claim("g3", "web3", SubnetId("v1", "a")).ok());  // .4 .5 .6; .7 is broadcast
  auto full = Claim("g4", "web4", SubnetId("v1", "a"));
  EXPECT_FALSE(full.ok());
  EXPECT_EQ(full.error_code(), "SubnetIsFull");
  EXPECT_EQ(full.http_status(), 400);

  auto missing = Claim("g5", "x", SubnetId("v1", "nope"));
  EXPECT_EQ(missing.error_code(), "InvalidResourceReference");
  auto foreign = Claim("g5", "x", SubnetId("v1", "a", kOtherSub));
  EXPECT_EQ(foreign.error_code(), "LinkedAuthorizationFailed");
  EXPECT_EQ(foreign.http_status(), 403);
  EXPECT_EQ(Claim("g5", "x", "/subscriptions/x/garbage").error_code(), "InvalidSubnetId");
  EXPECT_EQ(store_.claims(), 3u);  // refusals hold nothing

  // A subnet in use can be neither removed nor resized, and its network not deleted.
  auto removed = PutVnet("v1", VnetBody("10.1.0.0/16", SubnetJson("b", "10.1.1.0/24")));
  EXPECT_EQ(ErrorCode(removed.body()), "InUseSubnetCannotBeDeleted");
  auto resized = PutVnet("v1", VnetBody("10.1.0.0/16", SubnetJson("a", "10.1.0.0/28")));
  EXPECT_EQ(ErrorCode(resized.body()), "InUseSubnetCannotBeUpdated");
  v1::VnetApiRequest del;
  del.set_method("DELETE");
  del.set_subscription_id(kSub);
  del.set_resource_group("rg");
  del.set_name("v1");
  EXPECT_EQ(registry_.Vnets(del).status(), 409);
}

TEST_F(RegistryTest, PublicAddressesAndLabels) {
  auto a = Claim("g1", "web", "", "Public", "shop");
  ASSERT_TRUE(a.ok()) << a.error_message();
  EXPECT_EQ(a.public_ip(), "127.100.0.1");
  EXPECT_EQ(a.fqdn(), "shop.westeurope.skiff.test");
  auto taken = Claim("g2", "web2", "", "Public", "shop");
  EXPECT_FALSE(taken.ok());
  EXPECT_EQ(taken.error_code(), "DnsNameLabelNotAvailable");
  EXPECT_EQ(taken.http_status(), 409);
  EXPECT_TRUE(Claim("g2", "web2", "", "Public").ok());  // 127.100.0.2
  auto exhausted = Claim("g3", "web3", "", "Public");
  EXPECT_EQ(exhausted.error_code(), "PublicIPCountLimitReached");
  EXPECT_EQ(Claim("g1", "web", "", "Public", "shop").public_ip(), "127.100.0.1");  // kept on update
  registry_.Release("g1");
  auto reused = Claim("g3", "web3", "", "Public", "shop");
  EXPECT_TRUE(reused.ok());
  EXPECT_EQ(reused.fqdn(), "shop.westeurope.skiff.test");
}

TEST_F(RegistryTest, ReuseScopesHashTheLabel) {
  auto a = Claim("g1", "web", "", "Public", "shop", "ResourceGroupReuse");
  ASSERT_TRUE(a.ok()) << a.error_message();
  EXPECT_EQ(a.fqdn().rfind("shop-", 0), 0u) << a.fqdn();
  registry_.Release("g1");
  // The same label in the same resource group comes back under the same name…
  EXPECT_EQ(Claim("g2", "web", "", "Public", "shop", "ResourceGroupReuse").fqdn(), a.fqdn());
  registry_.Release("g2");
  // …another resource group gets another name, and Noreuse never repeats one.
  EXPECT_NE(Claim("g3", "web", "", "Public", "shop", "ResourceGroupReuse", kSub, "rg2").fqdn(), a.fqdn());
  registry_.Release("g3");
  auto n1 = Claim("g4", "web", "", "Public", "shop", "Noreuse").fqdn();
  registry_.Release("g4");
  EXPECT_NE(Claim("g5", "web", "", "Public", "shop", "Noreuse").fqdn(), n1);
}

TEST_F(RegistryTest, UnconfirmedClaimsAreLetGo) {
  ASSERT_TRUE(Claim("g1", "web").ok());
  ASSERT_TRUE(Claim("g2", "db").ok());
  registry_.Confirm("g2");
  now_ += registry_.options().unconfirmed_ttl + 1;
  EXPECT_EQ(registry_.SweepUnconfirmed(), 1);
  EXPECT_EQ(store_.claims(), 1u);
}

}  // namespace
