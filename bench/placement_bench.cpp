// Google Benchmark of the scheduler's placement core: place 10 groups per node onto clusters of
// 100, 1,000 and 10,000 nodes (mixed sizes and zones, a few public ports), bin-packing and
// spreading. items_per_second is placements per second.
//   build/dev/bench/placement_bench
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "skiff/scheduler/placement.h"

namespace {

using namespace skiff::scheduler;

struct Cluster {
  std::vector<NodeSpec> nodes;
  std::vector<GroupDemand> groups;
};

Cluster MakeCluster(int node_count) {
  Cluster cluster;
  std::mt19937 random(42);
  for (int i = 0; i < node_count; ++i) {
    NodeSpec node;
    node.node_id = "node-" + std::to_string(i);
    node.zone = std::to_string(1 + i % 3);
    node.capacity = i % 4 == 0 ? Resources{32, 128, 0} : Resources{16, 64, 0};
    cluster.nodes.push_back(node);
  }
  // About 10 groups per node, sized as ACI groups usually are, so the cluster ends near full.
  const double sizes[] = {0.25, 0.5, 1, 1, 2};
  for (int i = 0; i < node_count * 10; ++i) {
    GroupDemand demand;
    demand.group_id = "group-" + std::to_string(i);
    double cpu = sizes[random() % 5];
    demand.requests = {cpu, cpu * 2, 0};
    demand.limits = demand.requests;
    if (i % 7 == 0) demand.zones = {std::to_string(1 + i % 3)};
    if (i % 11 == 0) demand.public_ports = {PortKey("TCP", 80 + static_cast<int>(i % 5))};
    demand.spot = i % 13 == 0;
    cluster.groups.push_back(demand);
  }
  return cluster;
}

void PlaceAll(benchmark::State& state, Strategy strategy) {
  const Cluster cluster = MakeCluster(static_cast<int>(state.range(0)));
  int64_t placements = 0, unplaced = 0;
  for (auto _ : state) {
    state.PauseTiming();
    PlacementCore core({strategy, 1.0});
    for (const auto& node : cluster.nodes) core.UpsertNode(node);
    state.ResumeTiming();
    for (const auto& group : cluster.groups) {
      auto decision = core.Place(group);
      if (decision.placed) {
        for (const auto& victim : decision.evict) core.Release(victim, decision.node_version);
        core.Assign(decision.node_id, group, decision.node_version + 1);
      } else {
        ++unplaced;
      }
      ++placements;
    }
  }
  state.SetItemsProcessed(placements);
  state.counters["unplaced_share"] = static_cast<double>(unplaced) / static_cast<double>(placements);
}

void BM_PlaceBinPack(benchmark::State& state) { PlaceAll(state, Strategy::kBinPack); }
void BM_PlaceSpread(benchmark::State& state) { PlaceAll(state, Strategy::kSpread); }

BENCHMARK(BM_PlaceBinPack)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PlaceSpread)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
