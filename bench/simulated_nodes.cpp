// Simulated nodes for bench/scheduler_e2e: N nodes that heartbeat like skiff-node and accept
// every run and delete at once, so the benchmark measures the control plane, not runc.
//   simulated_nodes <nats-url> <nodes> <cpu per node> <memory GB per node>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "skiff/bus/nats_bus.h"
#include "skiff/node/v1/node.pb.h"

namespace {
std::atomic<bool> stopping{false};
}

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: simulated_nodes <nats-url> <nodes> <cpu> <memory-gb>\n";
    return 2;
  }
  const int count = std::atoi(argv[2]);
  const double cpu = std::atof(argv[3]), memory = std::atof(argv[4]);
  std::signal(SIGTERM, [](int) { stopping = true; });
  std::signal(SIGINT, [](int) { stopping = true; });
  skiff::bus::NatsBus bus(argv[1], "simulated-nodes");
  std::mutex mutex;
  std::map<std::string, std::map<std::string, int64_t>> placed;  // node -> group -> generation
  std::atomic<long> runs{0};
  auto server = bus.Serve(
      "skiff.node.*.*", "simulated-nodes",
      [&](const std::string& subject, const std::string& data) -> std::optional<std::string> {
        const auto first = subject.find('.', 11);
        const std::string node = subject.substr(11, first - 11), verb = subject.substr(first + 1);
        skiff::node::v1::NodeCommandReply reply;
        reply.set_ok(true);
        std::lock_guard lock(mutex);
        if (verb == "run") {
          skiff::node::v1::RunGroupRequest request;
          if (!request.ParseFromString(data)) return std::nullopt;
          placed[node][request.group().group_id()] = request.placement_generation();
          ++runs;
        } else if (verb == "delete") {
          skiff::node::v1::GroupCommandRequest request;
          if (!request.ParseFromString(data)) return std::nullopt;
          placed[node].erase(request.group().group_id());
        }
        return reply.SerializeAsString();
      },
      4);
  while (!stopping) {
    for (int i = 0; i < count && !stopping; ++i) {
      skiff::node::v1::NodeHeartbeat heartbeat;
      heartbeat.set_node_id("sim-" + std::to_string(i));
      heartbeat.set_zone(std::to_string(1 + i % 3));
      heartbeat.set_os_type("Linux");
      heartbeat.set_cpu_capacity(cpu);
      heartbeat.set_memory_gb_capacity(memory);
      {
        std::lock_guard lock(mutex);
        for (const auto& [group, generation] : placed[heartbeat.node_id()]) {
          auto* copy = heartbeat.add_placed();
          copy->set_group_id(group);
          copy->set_placement_generation(generation);
        }
      }
      bus.PublishCore("skiff.node.heartbeat." + heartbeat.node_id(), heartbeat.SerializeAsString());
    }
    for (int tick = 0; tick < 20 && !stopping; ++tick) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cerr << "simulated nodes ran " << runs << " groups\n";
  server.reset();
  bus.Drain(std::chrono::seconds(2));
  return 0;
}
