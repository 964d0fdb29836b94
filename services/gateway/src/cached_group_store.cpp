#include "skiff/gateway/cached_group_store.h"

#include <algorithm>

#include "skiff/gateway/group_codec.h"

namespace skiff::gateway {

CachedGroupStore::CachedGroupStore(GroupStore& inner, std::chrono::milliseconds ttl, size_t max_entries, SteadyNow now,
                                   std::chrono::milliseconds usage_ttl)
    : inner_(inner), ttl_(ttl), max_entries_(max_entries), now_(std::move(now)), usage_ttl_(usage_ttl) {}

CachedGroupStore::Key CachedGroupStore::KeyOf(const GroupKey& key) {
  return {Lower(key.subscription_id), Lower(key.resource_group), Lower(key.name)};
}

void CachedGroupStore::Put(const GroupKey& key, std::optional<GroupRecord> record) {
  std::lock_guard lock(mutex_);
  if (entries_.size() >= max_entries_) entries_.clear();  // bounded memory; refills on demand
  entries_[KeyOf(key)] = {std::move(record), now_()};
}

void CachedGroupStore::Drop(const GroupKey& key) {
  std::lock_guard lock(mutex_);
  entries_.erase(KeyOf(key));
}

std::optional<GroupRecord> CachedGroupStore::Find(const GroupKey& key) {
  if (ttl_.count() > 0) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(KeyOf(key));
    if (it != entries_.end() && now_() - it->second.fetched < ttl_) return it->second.record;
  }
  auto record = inner_.Find(key);
  if (ttl_.count() > 0) Put(key, record);
  return record;
}

SubscriptionUsage CachedGroupStore::Usage(const std::string& subscription_id, int64_t now_ms, int64_t count_cap) {
  if (usage_ttl_.count() <= 0) return inner_.Usage(subscription_id, now_ms, count_cap);
  const std::string key = Lower(subscription_id);
  {
    std::lock_guard lock(mutex_);
    auto it = usage_.find(key);
    if (it != usage_.end() && it->second.count_cap == count_cap && now_() - it->second.fetched < usage_ttl_) {
      it->second.now_ms = now_ms;
      return it->second.usage;
    }
  }
  const auto fetched = now_();
  SubscriptionUsage usage = inner_.Usage(subscription_id, now_ms, count_cap);
  std::lock_guard lock(mutex_);
  if (usage_.size() >= max_entries_) usage_.clear();
  usage_[key] = {usage, count_cap, now_ms, fetched};
  return usage;
}

void CachedGroupStore::CountCreate(const GroupRecord& record, const std::optional<OperationRecord>& operation) {
  std::lock_guard lock(mutex_);
  auto it = usage_.find(Lower(record.key.subscription_id));
  if (it == usage_.end()) return;
  SubscriptionUsage& usage = it->second.usage;
  usage.groups += 1;
  usage.cores += RequestedCores(record.spec);
  if (operation && operation->kind == "create") {
    // Counts stay capped: beyond the cap the exact number does not matter to a limit.
    usage.creates_last_5_minutes = std::min(usage.creates_last_5_minutes + 1, it->second.count_cap);
    usage.creates_last_hour = std::min(usage.creates_last_hour + 1, it->second.count_cap);
    if (usage.oldest_create_in_5_minutes_ms == 0) usage.oldest_create_in_5_minutes_ms = it->second.now_ms;
    if (usage.oldest_create_in_hour_ms == 0) usage.oldest_create_in_hour_ms = it->second.now_ms;
  }
}

void CachedGroupStore::DropUsage(const std::string& subscription_id) {
  std::lock_guard lock(mutex_);
  usage_.erase(Lower(subscription_id));
}

bool CachedGroupStore::Insert(const GroupRecord& record, const std::optional<OperationRecord>& operation,
                              const store::OutboxEntry& event) {
  Drop(record.key);
  bool written = inner_.Insert(record, operation, event);
  if (written && ttl_.count() > 0) Put(record.key, record);
  if (written) CountCreate(record, operation);
  return written;
}

bool CachedGroupStore::Update(const GroupRecord& record, int64_t expected_generation,
                              const std::optional<OperationRecord>& operation, const store::OutboxEntry& event) {
  Drop(record.key);
  DropUsage(record.key.subscription_id);  // the cores change by the old spec's, read again
  bool written = inner_.Update(record, expected_generation, operation, event);
  if (written && ttl_.count() > 0) Put(record.key, record);
  return written;
}

bool CachedGroupStore::Remove(const GroupKey& key, int64_t expected_generation, const OperationRecord& operation,
                              const store::OutboxEntry& event) {
  Drop(key);
  DropUsage(key.subscription_id);
  bool removed = inner_.Remove(key, expected_generation, operation, event);
  if (removed && ttl_.count() > 0) Put(key, std::nullopt);
  return removed;
}

}  // namespace skiff::gateway
