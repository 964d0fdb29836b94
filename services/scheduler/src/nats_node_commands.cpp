#include "skiff/scheduler/nats_node_commands.h"

#include "skiff/bus/nats_bus.h"
#include "skiff/log/log.h"
#include "skiff/node/v1/node.pb.h"

namespace skiff::scheduler {

NatsNodeCommands::NatsNodeCommands(bus::NatsBus& bus, int workers) : bus_(bus) {
  for (int i = 0; i < workers; ++i) {
    workers_.emplace_back([this] {
      for (;;) {
        std::function<void()> job;
        {
          std::unique_lock lock(mutex_);
          ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
          if (jobs_.empty()) return;
          job = std::move(jobs_.front());
          jobs_.pop_front();
        }
        job();
      }
    });
  }
}

NatsNodeCommands::~NatsNodeCommands() { Stop(); }

void NatsNodeCommands::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

bool NatsNodeCommands::Stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

void NatsNodeCommands::Enqueue(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  ready_.notify_one();
}

void NatsNodeCommands::Run(const std::string& node_id, const GroupRecord& group) {
  node::v1::RunGroupRequest request;
  *request.mutable_group() = group.ref;
  request.mutable_spec()->ParseFromString(group.spec);
  request.set_causation_id(group.causation_id);
  request.set_placement_generation(group.placement_generation);
  Enqueue([this, node_id, payload = request.SerializeAsString(), id = group.ref.group_id()] {
    // Asked again every few seconds rather than waited on for minutes, so a shutdown is not
    // held by a node that died mid-run. Run is idempotent per placement generation: a node that
    // already has this placement answers at once.
    std::optional<std::string> answer;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(10);
    while (!answer && std::chrono::steady_clock::now() < give_up && !Stopping()) {
      const auto sent = std::chrono::steady_clock::now();
      answer = bus_.Request("skiff.node." + node_id + ".run", payload, std::chrono::seconds(5));
      // Nobody subscribed (the node is gone) answers at once: do not spin.
      if (!answer && std::chrono::steady_clock::now() - sent < std::chrono::seconds(1)) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    }
    node::v1::NodeCommandReply reply;
    if (!answer || !reply.ParseFromString(*answer)) {
      // A lost node is noticed by its missing heartbeats and its groups placed again.
      spdlog::warn("node {} did not answer the run of group {}", node_id, id);
    } else if (!reply.ok()) {
      spdlog::warn("node {} could not run group {}: {} {}", node_id, id, reply.error_code(), reply.error_message());
    }
  });
}

void NatsNodeCommands::Delete(const std::string& node_id, const events::v1::GroupRef& ref,
                              int64_t placement_generation) {
  node::v1::GroupCommandRequest request;
  *request.mutable_group() = ref;
  request.set_placement_generation(placement_generation);
  Enqueue([this, node_id, payload = request.SerializeAsString(), id = ref.group_id()] {
    if (!bus_.Request("skiff.node." + node_id + ".delete", payload, std::chrono::seconds(30))) {
      spdlog::info("node {} did not answer the delete of group {} (its heartbeat will list it again)", node_id, id);
    }
  });
}

}  // namespace skiff::scheduler
