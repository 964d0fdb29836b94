#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "skiff/store/statement.h"

namespace skiff::store {

// A small fixed pool of libpqxx connections (libpqxx connections are not thread-safe; each
// thread leases one). Connections are opened lazily and reopened after they break.
class ConnectionPool {
 public:
  class Lease {
   public:
    Lease(ConnectionPool& pool, std::unique_ptr<pqxx::connection> conn) : pool_(&pool), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept = default;
    ~Lease() {
      if (pool_ != nullptr && conn_) pool_->Return(std::move(conn_));
    }
    pqxx::connection& operator*() { return *conn_; }
    pqxx::connection* operator->() { return conn_.get(); }
    // Drop the connection instead of returning it (after broken_connection).
    void Discard() {
      if (pool_ != nullptr && conn_) pool_->Return(nullptr);
      conn_.reset();
    }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<pqxx::connection> conn_;
  };

  ConnectionPool(std::string conninfo, size_t size);
  // Blocks until a connection is free; opens one if needed (throws pqxx::broken_connection).
  Lease Acquire();
  const std::string& conninfo() const { return conninfo_; }

 private:
  void Return(std::unique_ptr<pqxx::connection> conn);

  std::string conninfo_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  size_t capacity_;
  size_t open_ = 0;
};

// A Postgres session advisory lock on a connection of its own: at most one holder among all
// processes sharing the database, released when the holder's connection (or process) ends.
class ExclusiveLock {
 public:
  ExclusiveLock(std::string conninfo, std::string name);
  // True once this process holds the lock (throws pqxx::broken_connection while Postgres is away).
  bool TryAcquire();
  // False once the lock's connection broke: the lock went with it, so another may hold it now.
  bool StillHeld();

 private:
  std::string conninfo_;
  std::string name_;
  std::unique_ptr<pqxx::connection> conn_;
  bool held_ = false;
};

template <typename... Args>
pqxx::result ExecPrepared(pqxx::transaction_base& tx, const Statement& statement, Args&&... args) {
  tx.conn().prepare(statement.name, statement.sql);  // no-op once defined on this connection
  return tx.exec_prepared(statement.name, std::forward<Args>(args)...);
}

// Runs `body(pqxx::work&)` in a transaction and commits it, retrying the whole transaction on
// serialization failure, deadlock or a connection broken before commit. Never retries after
// in_doubt_error: the commit may have happened.
template <typename Body>
auto InTransaction(ConnectionPool& pool, Body&& body, int attempts = 5) {
  for (int attempt = 1;; ++attempt) {
    auto lease = pool.Acquire();
    try {
      pqxx::work tx(*lease);
      if constexpr (std::is_void_v<decltype(body(tx))>) {
        body(tx);
        tx.commit();
        return;
      } else {
        auto result = body(tx);
        tx.commit();
        return result;
      }
    } catch (const pqxx::in_doubt_error&) {
      throw;
    } catch (const pqxx::serialization_failure&) {
      if (attempt >= attempts) throw;
    } catch (const pqxx::deadlock_detected&) {
      if (attempt >= attempts) throw;
    } catch (const pqxx::broken_connection&) {
      lease.Discard();
      if (attempt >= attempts) throw;
    }
  }
}

// Runs a read-only `body(pqxx::nontransaction&)`: one round trip per statement instead of
// BEGIN/…/COMMIT. Retries once after a broken connection (a read is safe to repeat).
template <typename Body>
auto ReadOnly(ConnectionPool& pool, Body&& body) {
  for (int attempt = 1;; ++attempt) {
    auto lease = pool.Acquire();
    try {
      pqxx::nontransaction tx(*lease);
      return body(tx);
    } catch (const pqxx::broken_connection&) {
      lease.Discard();
      if (attempt >= 2) throw;
    }
  }
}

// Runs `body(pqxx::nontransaction&)` whose single statement writes atomically on its own (no
// BEGIN/COMMIT round trips). Never retried: a broken connection leaves the write in doubt.
template <typename Body>
auto AutoCommit(ConnectionPool& pool, Body&& body) {
  auto lease = pool.Acquire();
  try {
    pqxx::nontransaction tx(*lease);
    return body(tx);
  } catch (const pqxx::broken_connection&) {
    lease.Discard();
    throw;
  }
}

}  // namespace skiff::store
