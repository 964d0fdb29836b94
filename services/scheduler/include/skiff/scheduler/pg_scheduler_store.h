#pragma once

#include <functional>

#include "skiff/scheduler/scheduler_store.h"
#include "skiff/store/migrations.h"

namespace skiff::store {
class ConnectionPool;
}

namespace skiff::scheduler {

inline constexpr const char* kSchedulerSchema = "scheduler";
std::vector<store::Migration> SchedulerMigrations();

// The scheduler's schema in Postgres (libpqxx). Events go to scheduler.outbox in the same
// transaction as the change; `notify` wakes the outbox relay after a commit.
class PgSchedulerStore : public SchedulerStore {
 public:
  PgSchedulerStore(store::ConnectionPool& pool, std::function<void()> notify) : pool_(pool), notify_(std::move(notify)) {}

  CommitResult Commit(const WriteSet& writes) override;
  NodeSpec RegisterNode(const NodeSpec& node, TimePoint heartbeat) override;
  std::optional<int64_t> TransitionNode(const std::string& node_id, const std::vector<NodeCondition>& from,
                                        NodeCondition to) override;
  std::vector<StoredNode> LoadNodes() override;
  std::optional<StoredNode> LoadNode(const std::string& node_id) override;
  std::optional<GroupRecord> LoadGroup(const std::string& group_id) override;
  std::vector<GroupRecord> LoadGroups(const std::string& state, const std::string& node_id) override;
  std::optional<GroupRecord> DeleteGroup(const events::v1::GroupRef& ref, int64_t* node_version) override;

 private:
  store::ConnectionPool& pool_;
  std::function<void()> notify_;
};

}  // namespace skiff::scheduler
