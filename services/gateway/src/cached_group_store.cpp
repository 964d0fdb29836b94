#include "skiff/gateway/cached_group_store.h"

namespace skiff::gateway {

CachedGroupStore::CachedGroupStore(GroupStore& inner, std::chrono::milliseconds ttl, size_t max_entries, SteadyNow now)
    : inner_(inner), ttl_(ttl), max_entries_(max_entries), now_(std::move(now)) {}

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

bool CachedGroupStore::Insert(const GroupRecord& record, const std::optional<OperationRecord>& operation,
                              const store::OutboxEntry& event) {
  Drop(record.key);
  bool written = inner_.Insert(record, operation, event);
  if (written && ttl_.count() > 0) Put(record.key, record);
  return written;
}

bool CachedGroupStore::Update(const GroupRecord& record, int64_t expected_generation,
                              const std::optional<OperationRecord>& operation, const store::OutboxEntry& event) {
  Drop(record.key);
  bool written = inner_.Update(record, expected_generation, operation, event);
  if (written && ttl_.count() > 0) Put(record.key, record);
  return written;
}

bool CachedGroupStore::Remove(const GroupKey& key, int64_t expected_generation, const OperationRecord& operation,
                              const store::OutboxEntry& event) {
  Drop(key);
  bool removed = inner_.Remove(key, expected_generation, operation, event);
  if (removed && ttl_.count() > 0) Put(key, std::nullopt);
  return removed;
}

}  // namespace skiff::gateway
