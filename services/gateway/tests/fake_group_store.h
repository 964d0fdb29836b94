#pragma once

#include <map>
#include <mutex>
#include <tuple>

#include "skiff/gateway/clock.h"
#include "skiff/gateway/group_store.h"

namespace skiff::gateway {

// In-memory GroupStore with the same semantics as PgGroupStore, for unit tests.
class FakeGroupStore : public GroupStore {
 public:
  using Key = std::tuple<std::string, std::string, std::string>;
  static Key K(const GroupKey& k) { return {Lower(k.subscription_id), Lower(k.resource_group), Lower(k.name)}; }

  std::optional<GroupRecord> Find(const GroupKey& key) override {
    Check();
    auto it = groups.find(K(key));
    if (it == groups.end()) return std::nullopt;
    return it->second;
  }
  bool Insert(const GroupRecord& record, const std::optional<OperationRecord>& op,
              const store::OutboxEntry& event) override {
    Check();
    if (groups.count(K(record.key))) return false;
    groups[K(record.key)] = record;
    if (op) operations[op->id] = *op;
    if (op && op->kind == "create") {
      auto started = ParseTime(op->started_at);
      creates.push_back({Lower(op->subscription_id),
                         std::chrono::duration_cast<std::chrono::milliseconds>(started->time_since_epoch()).count()});
    }
    outbox.push_back(event);
    return true;
  }
  SubscriptionUsage Usage(const std::string& subscription, int64_t now_ms, int64_t) override {
    Check();
    SubscriptionUsage usage;
    for (const auto& [key, record] : groups) {
      if (std::get<0>(key) != Lower(subscription)) continue;
      ++usage.groups;
      for (const auto& c : record.spec.properties().containers()) usage.cores += c.properties().resources().requests().cpu();
    }
    for (const auto& [owner, at_ms] : creates) {
      if (owner != Lower(subscription) || at_ms <= now_ms - 3600000) continue;
      if (usage.creates_last_hour++ == 0) usage.oldest_create_in_hour_ms = at_ms;
      if (at_ms > now_ms - 300000 && usage.creates_last_5_minutes++ == 0) usage.oldest_create_in_5_minutes_ms = at_ms;
    }
    return usage;
  }
  bool Update(const GroupRecord& record, int64_t expected, const std::optional<OperationRecord>& op,
              const store::OutboxEntry& event) override {
    Check();
    auto it = groups.find(K(record.key));
    if (it == groups.end() || it->second.generation != expected) return false;
    it->second = record;
    if (op) operations[op->id] = *op;
    outbox.push_back(event);
    return true;
  }
  bool Remove(const GroupKey& key, int64_t expected, const OperationRecord& op,
              const store::OutboxEntry& event) override {
    Check();
    auto it = groups.find(K(key));
    if (it == groups.end() || it->second.generation != expected) return false;
    groups.erase(it);
    operations[op.id] = op;
    outbox.push_back(event);
    return true;
  }
  std::vector<GroupRecord> List(const std::string& subscription, const std::string& rg,
                                const std::optional<ListCursor>& after, int limit) override {
    Check();
    std::vector<GroupRecord> out;
    for (const auto& [key, record] : groups) {
      if (std::get<0>(key) != Lower(subscription)) continue;
      if (!rg.empty() && std::get<1>(key) != Lower(rg)) continue;
      if (after) {
        auto position = std::make_pair(std::get<1>(key), std::get<2>(key));
        auto cursor = rg.empty() ? std::make_pair(after->resource_group_key, after->name_key)
                                 : std::make_pair(std::get<1>(key), after->name_key);
        if (!(position > cursor)) continue;
      }
      out.push_back(record);
      if (static_cast<int>(out.size()) == limit) break;
    }
    return out;
  }
  std::optional<OperationRecord> FindOperation(const std::string& subscription, const std::string& id) override {
    Check();
    auto it = operations.find(id);
    if (it == operations.end() || Lower(it->second.subscription_id) != Lower(subscription)) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> SubscriptionForToken(const std::string& hash) override {
    Check();
    ++token_lookups;
    auto it = tokens.find(hash);
    if (it == tokens.end()) return std::nullopt;
    return it->second;
  }
  void AddToken(const std::string& hash, const std::string& subscription, const std::string&) override {
    tokens[hash] = subscription;
  }

  void Check() const {
    if (down) throw StoreUnavailable("connection refused");
  }

  bool down = false;
  int token_lookups = 0;
  std::map<Key, GroupRecord> groups;
  std::map<std::string, OperationRecord> operations;
  std::map<std::string, std::string> tokens;
  std::vector<std::pair<std::string, int64_t>> creates;  // (subscription, epoch ms), in order
  std::vector<store::OutboxEntry> outbox;
};

}  // namespace skiff::gateway
