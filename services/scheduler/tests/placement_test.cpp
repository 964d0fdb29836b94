#include "skiff/scheduler/placement.h"

#include <gtest/gtest.h>

namespace skiff::scheduler {
namespace {

NodeSpec MakeNode(const std::string& id, double cpu, double memory_gb, const std::string& zone = "") {
  NodeSpec node;
  node.node_id = id;
  node.zone = zone;
  node.capacity = {cpu, memory_gb, 0};
  return node;
}

GroupDemand MakeDemand(const std::string& id, double cpu, double memory_gb) {
  GroupDemand demand;
  demand.group_id = id;
  demand.requests = {cpu, memory_gb, 0};
  demand.limits = demand.requests;
  return demand;
}

TEST(PlacementCore, BinPackingFillsTheTightestNodeFirst) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  core.UpsertNode(MakeNode("big", 8, 32));
  core.UpsertNode(MakeNode("small", 2, 8));
  auto decision = core.Place(MakeDemand("g1", 1, 1));
  ASSERT_TRUE(decision.placed);
  EXPECT_EQ(decision.node_id, "small");
  core.Assign("small", MakeDemand("g1", 1, 1), 1);
  EXPECT_EQ(core.Place(MakeDemand("g2", 1, 1)).node_id, "small");
  core.Assign("small", MakeDemand("g2", 1, 1), 2);
  EXPECT_EQ(core.Place(MakeDemand("g3", 1, 1)).node_id, "big");  // small is full
}

TEST(PlacementCore, SpreadingTakesTheNodeWithMostRoom) {
  PlacementCore core({Strategy::kSpread, 1.0});
  core.UpsertNode(MakeNode("a", 4, 16));
  core.UpsertNode(MakeNode("b", 4, 16));
  core.Assign("a", MakeDemand("g1", 1, 1), 1);
  EXPECT_EQ(core.Place(MakeDemand("g2", 1, 1)).node_id, "b");
  core.Assign("b", MakeDemand("g2", 2, 1), 1);
  EXPECT_EQ(core.Place(MakeDemand("g3", 1, 1)).node_id, "a");
}

TEST(PlacementCore, MemoryAndGpuFilterNodesTheCpuIndexWouldPick) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  core.UpsertNode(MakeNode("low-memory", 2, 1));
  NodeSpec gpu = MakeNode("gpu", 16, 64);
  gpu.capacity.gpu = 2;
  core.UpsertNode(gpu);
  core.UpsertNode(MakeNode("plain", 4, 16));
  EXPECT_EQ(core.Place(MakeDemand("g1", 1, 4)).node_id, "plain");
  GroupDemand wants_gpu = MakeDemand("g2", 1, 1);
  wants_gpu.requests.gpu = 1;
  EXPECT_EQ(core.Place(wants_gpu).node_id, "gpu");
  wants_gpu.requests.gpu = 3;
  auto decision = core.Place(wants_gpu);
  EXPECT_FALSE(decision.placed);
  EXPECT_TRUE(decision.never_fits);
}

TEST(PlacementCore, ZonesRestrictTheCandidates) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  core.UpsertNode(MakeNode("n1", 2, 8, "1"));
  core.UpsertNode(MakeNode("n2", 8, 32, "2"));
  GroupDemand demand = MakeDemand("g", 1, 1);
  demand.zones = {"2"};
  EXPECT_EQ(core.Place(demand).node_id, "n2");
  demand.zones = {"3"};
  auto decision = core.Place(demand);
  EXPECT_FALSE(decision.placed);
  EXPECT_TRUE(decision.never_fits);  // no node in zone 3 at all
  EXPECT_NE(decision.reason.find("zone '3'"), std::string::npos);
}

TEST(PlacementCore, OsTypeMustMatch) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  core.UpsertNode(MakeNode("linux", 4, 16));
  GroupDemand demand = MakeDemand("g", 1, 1);
  demand.os_type = "Windows";
  auto decision = core.Place(demand);
  EXPECT_FALSE(decision.placed);
  EXPECT_TRUE(decision.never_fits);
}

TEST(PlacementCore, MicroVmGroupsGoOnlyToNodesThatOfferIt) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  core.UpsertNode(MakeNode("plain", 4, 16));
  GroupDemand vm = MakeDemand("vm", 1, 1);
  vm.microvm = true;
  auto refused = core.Place(vm);
  EXPECT_FALSE(refused.placed);
  EXPECT_TRUE(refused.never_fits);
  EXPECT_NE(refused.reason.find("No node offers MicroVM isolation"), std::string::npos) << refused.reason;

  NodeSpec offering = MakeNode("offers-vms", 8, 32);  // roomier: bin-packing alone would not pick it
  offering.microvm = true;
  core.UpsertNode(offering);
  auto placed = core.Place(vm);
  ASSERT_TRUE(placed.placed);
  EXPECT_EQ(placed.node_id, "offers-vms");
  // Groups without the request still go anywhere: the tightest node first.
  auto plain = core.Place(MakeDemand("plain-group", 1, 1));
  ASSERT_TRUE(plain.placed);
  EXPECT_EQ(plain.node_id, "plain");
}

TEST(PlacementCore, PublicPortsConflictOnANode) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  core.UpsertNode(MakeNode("a", 2, 8));
  core.UpsertNode(MakeNode("b", 8, 32));
  GroupDemand web = MakeDemand("web1", 0.5, 1);
  web.public_ports = {PortKey("TCP", 80)};
  core.Assign("a", web, 1);
  web.group_id = "web2";
  EXPECT_EQ(core.Place(web).node_id, "b");  // a is tighter, but port 80 is taken there
  web.public_ports = {PortKey("UDP", 80)};   // another protocol is another port
  EXPECT_EQ(core.Place(web).node_id, "a");
  core.Release("web1", 2);
  web.public_ports = {PortKey("TCP", 80)};
  EXPECT_EQ(core.Place(web).node_id, "a");
}

TEST(PlacementCore, LimitsOvercommitOnlyWithinTheRatio) {
  PlacementCore strict({Strategy::kBinPack, 1.0});
  PlacementCore loose({Strategy::kBinPack, 2.0});
  for (auto* core : {&strict, &loose}) {
    core->UpsertNode(MakeNode("n", 4, 16));
    GroupDemand bursty = MakeDemand("g1", 1, 2);
    bursty.limits = {3, 8, 0};
    core->Assign("n", bursty, 1);
  }
  GroupDemand next = MakeDemand("g2", 1, 2);
  next.limits = {2, 4, 0};
  EXPECT_FALSE(strict.Place(next).placed);  // limits 5 cpu > 4
  EXPECT_TRUE(loose.Place(next).placed);    // 5 <= 8
  next.limits = {6, 4, 0};
  EXPECT_FALSE(loose.Place(next).placed);   // 9 > 8
}

TEST(PlacementCore, CordonedDrainingAndLostNodesTakeNothing) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  core.UpsertNode(MakeNode("n", 4, 16));
  for (auto condition : {NodeCondition::kCordoned, NodeCondition::kDraining, NodeCondition::kLost}) {
    core.SetCondition("n", condition);
    auto decision = core.Place(MakeDemand("g", 1, 1));
    EXPECT_FALSE(decision.placed);
    EXPECT_FALSE(decision.never_fits);  // it would fit once the node is back
  }
  core.SetCondition("n", NodeCondition::kReady);
  EXPECT_TRUE(core.Place(MakeDemand("g", 1, 1)).placed);
}

TEST(PlacementCore, NoNodesMeansWaitNotFail) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  auto decision = core.Place(MakeDemand("g", 1, 1));
  EXPECT_FALSE(decision.placed);
  EXPECT_FALSE(decision.never_fits);
}

TEST(PlacementCore, RegularGroupsEvictTheFewestSpotGroups) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  core.UpsertNode(MakeNode("a", 4, 16));
  core.UpsertNode(MakeNode("b", 4, 16));
  auto spot = [](const std::string& id, double cpu) {
    GroupDemand demand = MakeDemand(id, cpu, 1);
    demand.spot = true;
    return demand;
  };
  core.Assign("a", spot("a-small-1", 1), 1);
  core.Assign("a", spot("a-small-2", 1), 2);
  core.Assign("a", spot("a-small-3", 1), 3);
  core.Assign("a", spot("a-small-4", 1), 4);
  core.Assign("b", spot("b-big", 3), 1);
  core.Assign("b", MakeDemand("b-regular", 1, 1), 2);
  // 3 cpu: node a needs three evictions, node b one.
  auto decision = core.Place(MakeDemand("regular", 3, 1));
  ASSERT_TRUE(decision.placed);
  EXPECT_EQ(decision.node_id, "b");
  EXPECT_EQ(decision.evict, std::vector<std::string>{"b-big"});
  // Spot never evicts Spot.
  auto spot_decision = core.Place(spot("another-spot", 3));
  EXPECT_FALSE(spot_decision.placed);
  EXPECT_TRUE(spot_decision.evict.empty());
}

TEST(PlacementCore, ReleaseAndResetKeepTheIndexesTrue) {
  PlacementCore core({Strategy::kBinPack, 1.0});
  core.UpsertNode(MakeNode("n", 2, 8));
  core.Assign("n", MakeDemand("g1", 2, 1), 1);
  EXPECT_FALSE(core.Place(MakeDemand("g2", 1, 1)).placed);
  core.Release("g1", 2);
  EXPECT_TRUE(core.Place(MakeDemand("g2", 1, 1)).placed);
  NodeSpec reloaded = MakeNode("n", 2, 8);
  reloaded.version = 7;
  core.ResetNode(reloaded, {MakeDemand("other", 1.5, 1)});
  EXPECT_EQ(core.VersionOf("n"), 7);
  EXPECT_FALSE(core.Place(MakeDemand("g2", 1, 1)).placed);
  EXPECT_EQ(core.NodeOf("other"), "n");
  EXPECT_EQ(core.NodeOf("g1"), "");
  core.RemoveNode("n");
  EXPECT_EQ(core.NodeOf("other"), "");
  EXPECT_TRUE(core.Nodes().empty());
}

}  // namespace
}  // namespace skiff::scheduler
