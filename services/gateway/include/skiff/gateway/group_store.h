#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "skiff/containerinstance/v1/container_group.pb.h"
#include "skiff/gateway/read_model.h"
#include "skiff/store/outbox.h"

namespace skiff::gateway {

// ARM names are case-insensitive; the store compares lower-cased keys and keeps the spelling
// of the first PUT for display.
struct GroupKey {
  std::string subscription_id;
  std::string resource_group;
  std::string name;
};

struct GroupRecord {
  GroupKey key;
  std::string group_id;  // UUID, immutable
  int64_t generation = 0;
  containerinstance::v1::ContainerGroup spec;  // secrets sealed
  std::optional<GroupRuntime> runtime;          // what the scheduler and node reported, if anything
};

struct OperationRecord {
  std::string id;
  std::string subscription_id;
  std::string kind;         // create | update | delete
  std::string resource_id;
  std::string status;       // InProgress | Succeeded | Failed | Canceled
  std::string started_at;   // RFC 3339
  std::string ended_at;
  std::string error_code;
  std::string error_message;
};

// What a subscription holds and how fast it has been creating, for quotas and rate limits.
struct SubscriptionUsage {
  int64_t groups = 0;
  double cores = 0;                  // requested cpu summed over every container of every group
  int64_t creates_last_5_minutes = 0;
  int64_t creates_last_hour = 0;
  int64_t oldest_create_in_5_minutes_ms = 0;  // epoch ms; when the 5-minute window frees a slot
  int64_t oldest_create_in_hour_ms = 0;
};

// Position after which a list page starts: the last (resource group, name) keys returned.
struct ListCursor {
  std::string resource_group_key;
  std::string name_key;
};

// The store is down or refused: answered as 503, never as a crash.
class StoreUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The gateway's persistence port. Each write stores the state change, its operation record and
// its event (outbox) in one transaction. Methods throw StoreUnavailable, nothing else.
class GroupStore {
 public:
  virtual ~GroupStore() = default;
  virtual std::optional<GroupRecord> Find(const GroupKey& key) = 0;
  // false: a group with this key exists (a concurrent create won).
  virtual bool Insert(const GroupRecord& record, const std::optional<OperationRecord>& operation,
                      const store::OutboxEntry& event) = 0;
  // false: the stored generation is no longer `expected_generation`.
  virtual bool Update(const GroupRecord& record, int64_t expected_generation,
                      const std::optional<OperationRecord>& operation, const store::OutboxEntry& event) = 0;
  virtual bool Remove(const GroupKey& key, int64_t expected_generation, const OperationRecord& operation,
                      const store::OutboxEntry& event) = 0;
  // Ordered by (resource group, name), lower-cased; `resource_group` empty lists the subscription.
  virtual std::vector<GroupRecord> List(const std::string& subscription_id, const std::string& resource_group,
                                        const std::optional<ListCursor>& after, int limit) = 0;
  // Counts at `now_ms` (epoch milliseconds): groups, cores, and create operations in the windows
  // (each counted up to `count_cap`: beyond the limit the exact number does not matter).
  virtual SubscriptionUsage Usage(const std::string& subscription_id, int64_t now_ms, int64_t count_cap) = 0;
  virtual std::optional<OperationRecord> FindOperation(const std::string& subscription_id, const std::string& id) = 0;
  virtual std::optional<std::string> SubscriptionForToken(const std::string& token_hash) = 0;
  virtual void AddToken(const std::string& token_hash, const std::string& subscription_id, const std::string& name) = 0;
};

std::string Lower(const std::string& s);

}  // namespace skiff::gateway
