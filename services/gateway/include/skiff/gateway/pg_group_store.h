#pragma once

#include <functional>
#include <string>
#include <vector>

#include "skiff/gateway/group_store.h"
#include "skiff/gateway/identity_api.h"
#include "skiff/store/migrations.h"

namespace skiff::store {
class ConnectionPool;
}

namespace skiff::gateway {

constexpr const char* kGatewaySchema = "gateway";
std::vector<store::Migration> GatewayMigrations();

// GroupStore on PostgreSQL (libpqxx), schema "gateway". libpqxx exceptions stop here: they
// become StoreUnavailable.
class PgGroupStore : public GroupStore, public RuntimeStore, public IdentityStore {
 public:
  explicit PgGroupStore(store::ConnectionPool& pool) : pool_(pool) {}

  std::optional<GroupRecord> Find(const GroupKey& key) override;
  bool Insert(const GroupRecord& record, const std::optional<OperationRecord>& operation,
              const store::OutboxEntry& event) override;
  bool Update(const GroupRecord& record, int64_t expected_generation, const std::optional<OperationRecord>& operation,
              const store::OutboxEntry& event) override;
  bool Remove(const GroupKey& key, int64_t expected_generation, const OperationRecord& operation,
              const store::OutboxEntry& event) override;
  std::vector<GroupRecord> List(const std::string& subscription_id, const std::string& resource_group,
                                const std::optional<ListCursor>& after, int limit) override;
  SubscriptionUsage Usage(const std::string& subscription_id, int64_t now_ms, int64_t count_cap) override;
  std::optional<OperationRecord> FindOperation(const std::string& subscription_id, const std::string& id) override;
  std::optional<std::string> SubscriptionForToken(const std::string& token_hash) override;
  void AddToken(const std::string& token_hash, const std::string& subscription_id, const std::string& name) override;
  // Key rotation: each stored spec passed to `reseal` (which seals its secrets again under the
  // current key and says whether it changed anything) is written back in place, with neither a
  // new generation nor an event (the group did not change). One group per transaction.
  // Returns how many specs were rewritten.
  int RewriteSpecs(const std::function<bool(const GroupRecord& record, containerinstance::v1::ContainerGroup* spec)>& reseal);
  void UpdateRuntimes(const std::vector<std::string>& group_ids, const Fold& fold) override;
  std::optional<ServicePrincipal> FindServicePrincipal(const std::string& client_id) override;
  void AddServicePrincipal(const ServicePrincipal& principal) override;
  void AddExpiringToken(const std::string& token_hash, const std::string& subscription_id, const std::string& name,
                        std::chrono::system_clock::time_point expires_at) override;

 private:
  store::ConnectionPool& pool_;
};

}  // namespace skiff::gateway
