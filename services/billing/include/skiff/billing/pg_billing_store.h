#pragma once

#include <functional>
#include <string>
#include <vector>

#include "skiff/billing/billing_service.h"
#include "skiff/store/migrations.h"

namespace skiff::store {
class ConnectionPool;
}

namespace skiff::billing {

inline constexpr const char* kBillingSchema = "billing";
std::vector<store::Migration> BillingMigrations();

// BillingStore on Postgres (schema `billing`). Each Commit is one transaction holding the
// processed event ids (the consumer's position), the meters, the closed intervals, the hourly
// rollup and the usage records for the outbox; a whole batch costs a fixed handful of statements.
class PgBillingStore : public BillingStore {
 public:
  PgBillingStore(store::ConnectionPool& pool, std::function<void()> outbox_written);
  void Commit(const std::vector<std::string>& event_ids, const std::vector<std::string>& group_ids,
              const Decide& decide) override;
  std::vector<GroupMeter> OpenMeters() override;
  void SaveLastSeen(const std::vector<std::pair<std::string, Millis>>& seen) override;
  std::vector<Interval> ClosedIntervals(const CostScope& scope, Millis from, Millis to) override;
  std::map<std::string, double> ClosedCostBySubscription() override;
  // Forgets processed event ids older than `age` (redelivery never comes that late).
  long PruneProcessed(std::chrono::hours age);

 private:
  store::ConnectionPool& pool_;
  std::function<void()> outbox_written_;
};

}  // namespace skiff::billing
