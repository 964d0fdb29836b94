#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "skiff/billing/billing_service.h"
#include "skiff/store/migrations.h"
#include "skiff/store/outbox_relay.h"

namespace skiff::store {
class ConnectionPool;
}

namespace skiff::billing {

inline constexpr const char* kBillingSchema = "billing";
std::vector<store::Migration> BillingMigrations();

// BillingStore on Postgres (schema `billing`). Each checkpoint is one transaction holding its
// event ids (one row: the consumer's position), the meters, the priced intervals and the hourly
// rollup; a whole checkpoint costs a fixed handful of statements.
class PgBillingStore : public BillingStore {
 public:
  // `intervals_written`: called after a commit that added intervals (to wake the usage relay).
  PgBillingStore(store::ConnectionPool& pool, std::function<void()> intervals_written);
  void Commit(const Checkpoint& checkpoint) override;
  std::vector<GroupMeter> LoadMeters() override;
  std::vector<std::string> ProcessedSince(Millis since) override;
  std::vector<Interval> ClosedIntervals(const CostScope& scope, Millis from, Millis to) override;
  std::map<std::string, double> ClosedCostBySubscription() override;
  // Forgets processed event ids older than `age` (billing's window: redelivery never comes later).
  long PruneProcessed(Millis age);
  // Publishes the usage record of each interval committed since the last call, in id order,
  // up to `limit`; returns how many. One relay per database (a row lock on its position).
  size_t PublishUsage(bus::EventPublisher& publisher, const std::string& currency, int limit);

 private:
  void Finished(int64_t max_id);

  store::ConnectionPool& pool_;
  std::function<void()> intervals_written_;
  std::mutex mutex_;
  int in_flight_ = 0;
  int64_t largest_given_ = 0;
  int64_t safe_through_ = 0;   // every interval id up to here is committed (or never will be)
};

// Publishes billing's usage records (skiff.usage.interval) from the intervals table.
class UsageRelay : public store::RelayLoop {
 public:
  UsageRelay(PgBillingStore& store, bus::EventPublisher& publisher, std::string currency);
  ~UsageRelay() override;
  size_t RunOnce() override;

 private:
  PgBillingStore& store_;
  bus::EventPublisher& publisher_;
  std::string currency_;
};

}  // namespace skiff::billing
