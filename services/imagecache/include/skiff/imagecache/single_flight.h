#pragma once

#include <functional>
#include <future>
#include <map>
#include <mutex>

namespace skiff::imagecache {

// Runs at most one `work` per key at a time; callers that arrive while it runs share its result
// (as Go's singleflight). The work runs on the first caller's thread.
template <typename Key, typename Value>
class SingleFlight {
 public:
  // `shared` (optional) is set to true when this caller joined another's flight.
  Value Do(const Key& key, const std::function<Value()>& work, bool* shared = nullptr) {
    std::unique_lock lock(mutex_);
    if (auto it = flights_.find(key); it != flights_.end()) {
      auto future = it->second;
      lock.unlock();
      if (shared) *shared = true;
      return future.get();
    }
    std::promise<Value> promise;
    auto future = promise.get_future().share();
    flights_.emplace(key, future);
    lock.unlock();
    if (shared) *shared = false;
    try {
      promise.set_value(work());
    } catch (...) {
      promise.set_exception(std::current_exception());
    }
    lock.lock();
    flights_.erase(key);
    lock.unlock();
    return future.get();
  }

 private:
  std::mutex mutex_;
  std::map<Key, std::shared_future<Value>> flights_;
};

}  // namespace skiff::imagecache
