#include "skiff/store/pool.h"

namespace skiff::store {

ConnectionPool::ConnectionPool(std::string conninfo, size_t size)
    : conninfo_(std::move(conninfo)), capacity_(size == 0 ? 1 : size) {}

ConnectionPool::Lease ConnectionPool::Acquire() {
  std::unique_lock lock(mutex_);
  available_.wait(lock, [&] { return !idle_.empty() || open_ < capacity_; });
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    if (conn->is_open()) return Lease(*this, std::move(conn));
    --open_;
  }
  ++open_;
  lock.unlock();
  try {
    return Lease(*this, std::make_unique<pqxx::connection>(conninfo_));
  } catch (...) {
    std::lock_guard relock(mutex_);
    --open_;
    available_.notify_one();
    throw;
  }
}

void ConnectionPool::Return(std::unique_ptr<pqxx::connection> conn) {
  std::lock_guard lock(mutex_);
  if (conn && conn->is_open()) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  available_.notify_one();
}

}  // namespace skiff::store
