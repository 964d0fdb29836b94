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

namespace skiff::store {

ExclusiveLock::ExclusiveLock(std::string conninfo, std::string name)
    : conninfo_(std::move(conninfo)), name_(std::move(name)) {}

bool ExclusiveLock::TryAcquire() {
  if (held_) return true;
  if (!conn_ || !conn_->is_open()) conn_ = std::make_unique<pqxx::connection>(conninfo_);
  pqxx::nontransaction tx(*conn_);
  held_ = tx.exec_params("SELECT pg_try_advisory_lock(hashtext($1))", name_)[0][0].as<bool>();
  return held_;
}

bool ExclusiveLock::StillHeld() {
  if (!held_ || !conn_) return false;
  try {
    pqxx::nontransaction tx(*conn_);
    tx.exec("SELECT 1");
    return true;
  } catch (const pqxx::broken_connection&) {
    held_ = false;
    return false;
  }
}

}  // namespace skiff::store
