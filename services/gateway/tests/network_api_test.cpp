// The gateway's side of networking, through a fake network link: claims on PUT (the address
// and name land in the view; a refusal stores nothing), the virtual-network routes, the
// ingress router's port choice.
#include <gtest/gtest.h>

#include "fake_group_store.h"
#include "skiff/crypto/crypto.h"
#include "skiff/gateway/group_api.h"
#include "skiff/gateway/ingress.h"
#include "test_support.h"

namespace skiff::gateway {
namespace {

const std::string kSub = "44444444-4444-4444-8444-444444444444";
const std::string kToken = "skf_network-token";

class FakeNetwork : public NetworkLink {
 public:
  std::optional<network::v1::ClaimReply> Claim(const network::v1::ClaimRequest& request) override {
    claims.push_back(request);
    return claim_reply;
  }
  std::optional<network::v1::VnetApiReply> Vnets(const network::v1::VnetApiRequest& request) override {
    vnet_requests.push_back(request);
    return vnet_reply;
  }
  std::optional<network::v1::ResolveReply> Resolve(const std::string& fqdn) override {
    ++resolves;
    if (fqdn != "shop.local.skiff.test") return network::v1::ResolveReply{};
    return resolve_reply;
  }
  std::vector<network::v1::ClaimRequest> claims;
  std::vector<network::v1::VnetApiRequest> vnet_requests;
  std::optional<network::v1::ClaimReply> claim_reply;
  std::optional<network::v1::VnetApiReply> vnet_reply;
  network::v1::ResolveReply resolve_reply;
  int resolves = 0;
};

class NetworkApiTest : public ::testing::Test {
 protected:
  NetworkApiTest() : box_(crypto::RandomBytes(32)) {
    store_.AddToken(crypto::HashApiToken(kToken), kSub, "");
    api_ = std::make_unique<GroupApi>(store_, clock_, box_, GroupApiOptions{}, SequentialIds(&next_id_));
    api_->SetNetworkLink(&network_);
  }
  HttpResponse Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return api_->Handle(AuthorizedRequest(kToken, method, path, body));
  }
  std::string GroupPath(const std::string& name) {
    return "/subscriptions/" + kSub + "/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/" + name +
           "?api-version=2023-05-01";
  }
  static std::string PublicGroup() {
    return R"({"location":"local","properties":{"osType":"Linux","ipAddress":{"type":"Public","dnsNameLabel":"shop",)"
           R"("ports":[{"port":80}]},"containers":[{"name":"web","properties":{"image":"127.0.0.1:5000/skiff/httpd:1",)"
           R"("ports":[{"port":80}],"resources":{"requests":{"cpu":1,"memoryInGB":0.5}}}}]}})";
  }

  FakeGroupStore store_;
  TestClock clock_;
  crypto::SecretBox box_;
  int next_id_ = 0;
  FakeNetwork network_;
  std::unique_ptr<GroupApi> api_;
};

TEST_F(NetworkApiTest, PutClaimsAndShowsTheAddressAndName) {
  network::v1::ClaimReply ok;
  ok.set_ok(true);
  ok.set_private_ip("10.240.0.4");
  ok.set_public_ip("127.100.0.1");
  ok.set_fqdn("shop.local.skiff.test");
  network_.claim_reply = ok;
  auto created = Call("PUT", GroupPath("web"), PublicGroup());
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_NE(created.body.find(R"("ip":"127.100.0.1")"), std::string::npos) << created.body;
  EXPECT_NE(created.body.find(R"("fqdn":"shop.local.skiff.test")"), std::string::npos);
  ASSERT_EQ(network_.claims.size(), 1u);
  const network::v1::ClaimRequest claim = network_.claims[0];  // a copy: the vector grows below
  EXPECT_EQ(claim.group().name(), "web");
  EXPECT_EQ(claim.ip_address().dns_name_label(), "shop");
  EXPECT_FALSE(claim.group().group_id().empty());
  // The update claims again for the same group id (the network keeps its addresses).
  ASSERT_EQ(Call("PUT", GroupPath("web"), PublicGroup()).status, 200);
  ASSERT_EQ(network_.claims.size(), 2u);
  EXPECT_EQ(network_.claims[1].group().group_id(), claim.group().group_id());
  EXPECT_NE(Call("GET", GroupPath("web")).body.find(R"("ip":"127.100.0.1")"), std::string::npos);
}

TEST_F(NetworkApiTest, ARefusedClaimStoresNothing) {
  network::v1::ClaimReply refused;
  refused.set_http_status(409);
  refused.set_error_code("DnsNameLabelNotAvailable");
  refused.set_error_message("The DNS name label 'shop' is already used.");
  network_.claim_reply = refused;
  auto r = Call("PUT", GroupPath("web"), PublicGroup());
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find(R"({"error":{"code":"DnsNameLabelNotAvailable","message":"The DNS name label 'shop' is already used."}})"),
            std::string::npos)
      << r.body;
  EXPECT_EQ(Call("GET", GroupPath("web")).status, 404);

  network_.claim_reply.reset();  // the network service does not answer
  auto unavailable = Call("PUT", GroupPath("web"), PublicGroup());
  EXPECT_EQ(unavailable.status, 503);
  EXPECT_NE(unavailable.body.find("NetworkUnavailable"), std::string::npos);
  EXPECT_EQ(Call("GET", GroupPath("web")).status, 404);
}

TEST_F(NetworkApiTest, AGroupInASubnetShowsItsPrivateAddressEvenWithoutPorts) {
  network::v1::ClaimReply ok;
  ok.set_ok(true);
  ok.set_private_ip("10.61.1.4");
  network_.claim_reply = ok;
  const std::string subnet =
      "/subscriptions/" + kSub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s";
  auto r = Call("PUT", GroupPath("inner"),
                R"({"location":"local","properties":{"osType":"Linux","subnetIds":[{"id":")" + subnet +
                    R"("}],"containers":[{"name":"c","properties":{"image":"127.0.0.1:5000/skiff/hello:1",)"
                    R"("resources":{"requests":{"cpu":1,"memoryInGB":0.5}}}}]}})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_NE(r.body.find(R"("ipAddress":{"type":"Private","ip":"10.61.1.4"})"), std::string::npos) << r.body;
  ASSERT_EQ(network_.claims.back().subnet_ids_size(), 1);
  EXPECT_EQ(network_.claims.back().subnet_ids(0), subnet);
}

TEST_F(NetworkApiTest, VirtualNetworkRoutesForwardTheRequest) {
  network::v1::VnetApiReply reply;
  reply.set_status(201);
  reply.set_body(R"({"name":"v"})");
  network_.vnet_reply = reply;
  const std::string base = "/subscriptions/" + kSub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks";
  auto put = Call("PUT", base + "/v?api-version=2023-04-01", R"({"location":"local"})");
  EXPECT_EQ(put.status, 201);
  EXPECT_EQ(put.body, R"({"name":"v"})");
  ASSERT_EQ(network_.vnet_requests.size(), 1u);
  EXPECT_EQ(network_.vnet_requests[0].method(), "PUT");
  EXPECT_EQ(network_.vnet_requests[0].name(), "v");
  EXPECT_EQ(network_.vnet_requests[0].body(), R"({"location":"local"})");
  Call("GET", base + "/v/subnets/s?api-version=2023-04-01");
  EXPECT_EQ(network_.vnet_requests.back().subnet(), "s");
  Call("GET", "/subscriptions/" + kSub + "/providers/Microsoft.Network/virtualNetworks?api-version=2023-04-01");
  EXPECT_TRUE(network_.vnet_requests.back().resource_group().empty());

  EXPECT_EQ(Call("POST", base + "/v?api-version=2023-04-01").status, 405);
  EXPECT_EQ(Call("GET", base + "/v?api-version=latest").status, 400);  // not a dated version
  EXPECT_EQ(Call("GET", base + "/v/other/x?api-version=2023-04-01").status, 404);
  // Another subscription's networks do not exist for this token.
  EXPECT_EQ(Call("GET", "/subscriptions/55555555-5555-4555-8555-555555555555/resourceGroups/rg/providers/"
                        "Microsoft.Network/virtualNetworks/v?api-version=2023-04-01")
                .status,
            404);
  network_.vnet_reply.reset();
  EXPECT_EQ(Call("GET", base + "/v?api-version=2023-04-01").status, 503);
}

TEST(IngressRouter, PicksThePortAndCachesAnswers) {
  FakeNetwork network;
  network.resolve_reply.set_found(true);
  network.resolve_reply.set_public_ip("127.100.0.9");
  for (auto [port, protocol] : {std::pair{53, "UDP"}, {8080, "TCP"}, {80, "TCP"}}) {
    auto* p = network.resolve_reply.add_ports();
    p->set_port(port);
    p->set_protocol(protocol);
  }
  IngressRouter router(network, std::chrono::seconds(60));
  auto target = router.Route("SHOP.local.skiff.test");
  ASSERT_TRUE(target);
  EXPECT_EQ(target->address, "127.100.0.9");
  EXPECT_EQ(target->port, 80);
  EXPECT_EQ(router.Route("shop.local.skiff.test:8080")->port, 8080);
  EXPECT_EQ(router.Route("shop.local.skiff.test:53")->port, 80);  // UDP is not proxied
  EXPECT_EQ(network.resolves, 1);  // cached
  EXPECT_FALSE(router.Route("other.local.skiff.test"));
  EXPECT_FALSE(router.Route("shop.local.skiff.test:http"));
  EXPECT_FALSE(router.Route(""));
}

}  // namespace
}  // namespace skiff::gateway
