#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <tuple>

#include "skiff/gateway/group_store.h"

namespace skiff::gateway {

// Read-through cache of single-group reads in front of another GroupStore. This gateway's own
// writes update or drop the entry in the same call, so a client reads its own writes; a write
// made through another gateway replica shows here after at most `ttl` (ARM reads are eventually
// consistent across replicas in the same way). Lists, operations and tokens are not cached here.
//
// A subscription's usage (for quotas and create-rate limits) is read at most once per
// `usage_ttl` and this gateway's own creates are added to it as they are written, so a burst of
// creates costs one usage query instead of one each. Another replica's writes count after at
// most `usage_ttl`; a create that leaves a rate window counts until the next read (so a limit
// can refuse up to `usage_ttl` early, never late for this replica's own creates). Updates and
// deletes drop the entry: the next check reads again.
class CachedGroupStore : public GroupStore {
 public:
  using SteadyNow = std::function<std::chrono::steady_clock::time_point()>;
  CachedGroupStore(GroupStore& inner, std::chrono::milliseconds ttl, size_t max_entries = 100000,
                   SteadyNow now = [] { return std::chrono::steady_clock::now(); },
                   std::chrono::milliseconds usage_ttl = std::chrono::milliseconds(0));

  std::optional<GroupRecord> Find(const GroupKey& key) override;
  bool Insert(const GroupRecord& record, const std::optional<OperationRecord>& operation,
              const store::OutboxEntry& event) override;
  bool Update(const GroupRecord& record, int64_t expected_generation, const std::optional<OperationRecord>& operation,
              const store::OutboxEntry& event) override;
  bool Remove(const GroupKey& key, int64_t expected_generation, const OperationRecord& operation,
              const store::OutboxEntry& event) override;
  std::vector<GroupRecord> List(const std::string& subscription_id, const std::string& resource_group,
                                const std::optional<ListCursor>& after, int limit) override {
    return inner_.List(subscription_id, resource_group, after, limit);
  }
  SubscriptionUsage Usage(const std::string& subscription_id, int64_t now_ms, int64_t count_cap) override;
  std::optional<OperationRecord> FindOperation(const std::string& subscription_id, const std::string& id) override {
    return inner_.FindOperation(subscription_id, id);
  }
  std::optional<std::string> SubscriptionForToken(const std::string& token_hash) override {
    return inner_.SubscriptionForToken(token_hash);
  }
  void AddToken(const std::string& token_hash, const std::string& subscription_id, const std::string& name) override {
    inner_.AddToken(token_hash, subscription_id, name);
  }

 private:
  using Key = std::tuple<std::string, std::string, std::string>;
  static Key KeyOf(const GroupKey& key);
  void Put(const GroupKey& key, std::optional<GroupRecord> record);
  void Drop(const GroupKey& key);
  void CountCreate(const GroupRecord& record, const std::optional<OperationRecord>& operation);
  void DropUsage(const std::string& subscription_id);

  struct Entry {
    std::optional<GroupRecord> record;  // nullopt: known absent
    std::chrono::steady_clock::time_point fetched;
  };
  GroupStore& inner_;
  std::chrono::milliseconds ttl_;
  size_t max_entries_;
  SteadyNow now_;
  std::mutex mutex_;
  std::map<Key, Entry> entries_;

  struct UsageEntry {
    SubscriptionUsage usage;
    int64_t count_cap = 0;
    int64_t now_ms = 0;  // the time of the last check, for a create counted here
    std::chrono::steady_clock::time_point fetched;
  };
  std::chrono::milliseconds usage_ttl_;
  std::map<std::string, UsageEntry> usage_;  // by lower-cased subscription
};

}  // namespace skiff::gateway
