#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "skiff/scheduler/scheduler_store.h"

namespace skiff::bus {
class NatsBus;
}

namespace skiff::scheduler {

// Sends run and delete commands to skiff.node.<id>.* from a pool of threads: a run waits for the
// node (an image pull can take minutes), and the scheduling loop must not. The node fences by
// placement generation, so commands for one group may arrive in any order.
class NatsNodeCommands : public NodeCommands {
 public:
  NatsNodeCommands(bus::NatsBus& bus, int workers);
  ~NatsNodeCommands() override;
  void Run(const std::string& node_id, const GroupRecord& group) override;
  void Delete(const std::string& node_id, const events::v1::GroupRef& ref, int64_t placement_generation) override;
  void Stop();

 private:
  void Enqueue(std::function<void()> job);
  bool Stopping();
  bus::NatsBus& bus_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace skiff::scheduler
