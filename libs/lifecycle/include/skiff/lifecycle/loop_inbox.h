#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <utility>

namespace skiff::lifecycle {

// Work handed to a service's loop from other threads (NATS callbacks, operator requests), so a
// service that is one actor is only ever touched by its loop.
class LoopInbox {
 public:
  void Post(std::function<void()> task) {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  std::deque<std::function<void()>> Take() {
    std::lock_guard lock(mutex_);
    return std::exchange(tasks_, {});
  }

 private:
  std::mutex mutex_;
  std::deque<std::function<void()>> tasks_;
};

}  // namespace skiff::lifecycle
