#include "skiff/network/host_network.h"

#include <gtest/gtest.h>

#include <set>

#include "fake_network_store.h"
#include "skiff/network/host_adapters.h"

using namespace skiff::network;

namespace {

class FakeCni : public CniRunner {
 public:
  Outcome Add(const std::string& conflist, const std::string& id, const std::string& netns, const std::string&) override {
    adds.push_back(id + "@" + netns);
    if (fail_add) return {false, "", "bridge exploded"};
    live.insert(id);
    last_conflist = conflist;
    return {true, R"({"cniVersion":"1.0.0"})", ""};
  }
  Outcome Del(const std::string&, const std::string& prev, const std::string& id, const std::string&, const std::string&) override {
    dels.push_back(id);
    last_prev = prev;
    live.erase(id);
    return {true, "", ""};
  }
  std::vector<std::string> adds, dels;
  std::set<std::string> live;
  std::string last_conflist, last_prev;
  bool fail_add = false;
};

class FakePlumbing : public HostPlumbing {
 public:
  std::optional<std::string> SyncIsolation(const std::vector<HostBridge>& b) override {
    synced = b;
    for (const auto& bridge : b) bridges.insert(bridge.name);
    return std::nullopt;
  }
  std::vector<std::string> ListBridges() override { return {bridges.begin(), bridges.end()}; }
  void DeleteBridge(const std::string& name) override { bridges.erase(name); }
  bool NamespaceExists(const std::string& path) override { return namespaces.count(path) > 0; }
  std::vector<HostBridge> synced;
  std::set<std::string> bridges, namespaces;
};

class HostNetworkTest : public ::testing::Test {
 protected:
  HostNetworkTest()
      : registry_(store_, {}, [] { return Millis{0}; }), host_(store_, cni_, plumbing_, Options()) {}
  static HostNetworkOptions Options() {
    HostNetworkOptions options;
    options.agent = "host1";
    return options;
  }
  void ClaimGroup(const std::string& id, const std::string& sub = "s1", bool with_public = false) {
    v1::ClaimRequest request;
    request.mutable_group()->set_group_id(id);
    request.mutable_group()->set_subscription_id(sub);
    request.mutable_group()->set_resource_group("rg");
    request.mutable_group()->set_name("n-" + id);
    request.set_location("westeurope");
    if (with_public) {
      request.mutable_ip_address()->set_type("Public");
      auto* port = request.mutable_ip_address()->add_ports();
      port->set_port(80);
      port->set_protocol("TCP");
    }
    ASSERT_TRUE(registry_.Claim(request).ok());
  }
  v1::AttachRequest AttachRequest(const std::string& id, const std::string& netns, int64_t generation = 1) {
    plumbing_.namespaces.insert(netns);
    v1::AttachRequest request;
    request.mutable_group()->set_group_id(id);
    request.set_netns_path(netns);
    request.set_placement_generation(generation);
    return request;
  }

  fakes::FakeNetworkStore store_;
  FakeCni cni_;
  FakePlumbing plumbing_;
  Registry registry_;
  HostNetwork host_;
};

TEST_F(HostNetworkTest, AttachRunsCniOnceAndAnswersTheAddressAndDns) {
  ClaimGroup("g1");
  auto reply = host_.Attach(AttachRequest("g1", "/var/run/netns/skiff-g1"));
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  EXPECT_EQ(reply.ip(), "10.240.0.4");
  EXPECT_EQ(reply.gateway(), "10.240.0.1");
  EXPECT_EQ(reply.prefix_length(), 22);
  ASSERT_EQ(reply.name_servers_size(), 1);
  EXPECT_EQ(reply.name_servers(0), "10.240.0.1");
  EXPECT_EQ(reply.search_domains(0), "skiff.internal");
  EXPECT_EQ(cni_.adds.size(), 1u);
  // Asked again (a node restarting): nothing runs twice.
  ASSERT_TRUE(host_.Attach(AttachRequest("g1", "/var/run/netns/skiff-g1")).ok());
  EXPECT_EQ(cni_.adds.size(), 1u);
  EXPECT_EQ(plumbing_.synced.size(), 1u);
}

TEST_F(HostNetworkTest, UserDnsConfigReplacesTheResponder) {
  ClaimGroup("g1");
  auto request = AttachRequest("g1", "/var/run/netns/skiff-g1");
  request.mutable_dns_config()->add_name_servers("10.9.9.9");
  request.mutable_dns_config()->set_search_domains("a.example b.example");
  request.mutable_dns_config()->set_options("ndots:2 timeout:1");
  auto reply = host_.Attach(request);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply.name_servers(0), "10.9.9.9");
  ASSERT_EQ(reply.search_domains_size(), 2);
  EXPECT_EQ(reply.options(1), "timeout:1");
}

TEST_F(HostNetworkTest, NoClaimNoNamespaceOrFailedAddLeavesNothing) {
  EXPECT_EQ(host_.Attach(AttachRequest("ghost", "/var/run/netns/x")).error_code(), "NetworkNotClaimed");
  ClaimGroup("g1");
  auto request = AttachRequest("g1", "/var/run/netns/skiff-g1");
  plumbing_.namespaces.clear();
  EXPECT_EQ(host_.Attach(request).error_code(), "NamespaceNotFound");
  cni_.fail_add = true;
  auto failed = host_.Attach(AttachRequest("g1", "/var/run/netns/skiff-g1"));
  EXPECT_EQ(failed.error_code(), "NetworkFailed");
  EXPECT_NE(failed.error_message().find("bridge exploded"), std::string::npos);
  EXPECT_EQ(store_.attachments(), 0u);
  EXPECT_EQ(cni_.dels.size(), 1u);  // the half-done ADD is undone
}

TEST_F(HostNetworkTest, NewerPlacementTakesTheAddressAndOlderCannotTakeItBack) {
  ClaimGroup("g1");
  ASSERT_TRUE(host_.Attach(AttachRequest("g1", "/var/run/netns/n1-g1", 1)).ok());
  ASSERT_TRUE(host_.Attach(AttachRequest("g1", "/var/run/netns/n2-g1", 2)).ok());
  EXPECT_EQ(cni_.dels, std::vector<std::string>{"n1-g1"});
  EXPECT_EQ(host_.Attach(AttachRequest("g1", "/var/run/netns/n1-g1", 1)).error_code(), "StalePlacement");
  EXPECT_EQ(store_.attachments(), 1u);
}

TEST_F(HostNetworkTest, DetachUndoesWithTheAddResultAndDropsTheLastBridge) {
  ClaimGroup("g1");
  ClaimGroup("g2", "s2");
  ASSERT_TRUE(host_.Attach(AttachRequest("g1", "/var/run/netns/skiff-g1")).ok());
  ASSERT_TRUE(host_.Attach(AttachRequest("g2", "/var/run/netns/skiff-g2")).ok());
  EXPECT_EQ(plumbing_.bridges.size(), 2u);
  v1::DetachRequest detach;
  detach.set_group_id("g1");
  ASSERT_TRUE(host_.Detach(detach).ok());
  EXPECT_EQ(cni_.last_prev, R"({"cniVersion":"1.0.0"})");
  EXPECT_EQ(plumbing_.bridges.size(), 1u);
  EXPECT_EQ(plumbing_.synced.size(), 1u);
}

TEST_F(HostNetworkTest, ReconcileRemovesWhatACrashLeft) {
  ClaimGroup("g1");
  ClaimGroup("g2");
  ASSERT_TRUE(host_.Attach(AttachRequest("g1", "/var/run/netns/skiff-g1")).ok());
  ASSERT_TRUE(host_.Attach(AttachRequest("g2", "/var/run/netns/skiff-g2")).ok());
  // A crash mid-ADD leaves an incomplete record; a node crash leaves a record whose namespace is gone.
  Attachment half;
  half.group_id = "g3";
  half.netns_path = "/var/run/netns/skiff-g3";
  half.agent = "host1";
  half.container_id = "skiff-g3";
  store_.SaveAttachment(half);
  plumbing_.namespaces.erase("/var/run/netns/skiff-g2");
  ClaimGroup("g9", "s9");  // a subnet of this installation whose bridge nobody uses any more
  plumbing_.bridges.insert(Registry::BridgeName("default/s9"));
  plumbing_.bridges.insert("skb000000000000");  // another installation's: not ours to remove
  auto stats = host_.Reconcile();
  EXPECT_EQ(stats.attachments_removed, 2);
  EXPECT_EQ(stats.bridges_removed, 1);
  EXPECT_EQ(store_.attachments(), 1u);
  EXPECT_EQ(plumbing_.bridges.size(), 2u);
  EXPECT_EQ(plumbing_.bridges.count("skb000000000000"), 1u);
}

TEST(ConfList, BridgeStaticPortmapFirewall) {
  SubnetRow subnet;
  subnet.bridge = "skbabc";
  subnet.prefix = *Ipv4Prefix::Parse("10.1.0.0/24");
  GroupClaim claim;
  claim.private_ip = *ParseIpv4("10.1.0.9");
  std::string plain = HostNetwork::ConfList(subnet, claim, false);
  EXPECT_NE(plain.find(R"("address":"10.1.0.9/24","gateway":"10.1.0.1")"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("portmap"), std::string::npos);
  EXPECT_NE(plain.find(R"("type":"firewall")"), std::string::npos);
  claim.public_ip = *ParseIpv4("127.100.0.7");
  v1::PublishedPort udp;
  udp.set_port(53);
  udp.set_protocol("UDP");
  claim.ports.push_back(udp);
  std::string published = HostNetwork::ConfList(subnet, claim, true);
  EXPECT_NE(published.find(R"({"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"127.100.0.7"})"),
            std::string::npos)
      << published;
  EXPECT_NE(published.find(R"("ipMasq":true)"), std::string::npos);
}

TEST(IsolationRules, OnlyBridgesOfOneNetworkReachEachOther) {
  IptablesPlumbing plumbing("it-host");
  EXPECT_EQ(plumbing.isolation_chain(), "SKIFF-ISO-ITHOST");
  std::string rules = plumbing.IsolationRules({{"skbA", "vnet1", 0}, {"skbB", "vnet1", 0}, {"skbC", "vnet2", 0}});
  EXPECT_NE(rules.find("-A SKIFF-ISO-ITHOST -i skbA -o skbB -j RETURN"), std::string::npos);
  EXPECT_NE(rules.find("-A SKIFF-ISO-ITHOST -i skbB -o skbA -j RETURN"), std::string::npos);
  EXPECT_EQ(rules.find("-i skbA -o skbC -j RETURN"), std::string::npos);
  EXPECT_EQ(rules.find("-i skbC -o skbB -j RETURN"), std::string::npos);
  // Drops only what comes from its own bridges, after every allowed pair.
  EXPECT_LT(rules.find("-i skbC -o skbC -j RETURN"), rules.find("-i skbA -o skb+ -j DROP"));
  EXPECT_NE(rules.find("-A SKIFF-ISO-ITHOST -i skbC -o skb+ -j DROP"), std::string::npos);
  EXPECT_EQ(rules.find("-i skb+ -o skb+"), std::string::npos);
  EXPECT_NE(rules.find("COMMIT"), std::string::npos);
}

TEST(IsolationRules, GroupsReachOnlyTheirOwnBridgesDnsAndNoMetadata) {
  IptablesPlumbing plumbing("it-host", {"169.254.0.0/16", "10.200.0.0/24"});
  std::string rules = plumbing.IsolationRules({{"skbA", "vnet1", 0x0a000001}, {"skbB", "vnet2", 0x0a000101}});
  EXPECT_NE(rules.find("-A SKIFF-HOST-ITHOST -i skbA -d 10.0.0.1/32 -p udp --dport 53 -j RETURN"), std::string::npos)
      << rules;
  EXPECT_NE(rules.find("-A SKIFF-HOST-ITHOST -i skbB -d 10.0.1.1/32 -p tcp --dport 53 -j RETURN"), std::string::npos);
  // No rule lets DNS to any host address through: a group could ask another network's responder.
  EXPECT_EQ(rules.find("-A SKIFF-HOST-ITHOST -p udp --dport 53 -j RETURN"), std::string::npos);
  EXPECT_NE(rules.find("-A SKIFF-ISO-ITHOST -i skbA -d 169.254.0.0/16 -j DROP"), std::string::npos);
  EXPECT_NE(rules.find("-A SKIFF-ISO-ITHOST -i skbB -d 10.200.0.0/24 -j DROP"), std::string::npos);
  EXPECT_LT(rules.find("-i skbB -d 10.0.1.1/32 -p tcp"), rules.find("-A SKIFF-HOST-ITHOST -i skbB -j DROP"));
  EXPECT_NE(rules.find("-A SKIFF-HOST-ITHOST -i skbA -j DROP"), std::string::npos);
  // No catch-all: another installation's bridges are its own chain's to judge.
  EXPECT_EQ(rules.find("-A SKIFF-HOST-ITHOST -j DROP"), std::string::npos);
}

}  // namespace
