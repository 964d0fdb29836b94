#pragma once

#include <vector>

#include "skiff/network/network_store.h"
#include "skiff/store/migrations.h"

namespace skiff::store {
class ConnectionPool;
}

namespace skiff::network {

inline constexpr const char* kNetworkSchema = "network";
std::vector<store::Migration> NetworkMigrations();

// NetworkStore on Postgres (schema `network`). Unique indexes back the allocator's lock:
// an address, a public address or a label can never be held twice, whatever a caller does.
class PgNetworkStore : public NetworkStore {
 public:
  explicit PgNetworkStore(store::ConnectionPool& pool) : pool_(pool) {}
  void InTransaction(const std::function<void(NetworkTx&)>& body) override;
  std::vector<std::pair<GroupClaim, SubnetRow>> AllClaims() override;
  std::vector<Attachment> Attachments(const std::string& agent) override;
  std::vector<Attachment> GroupAttachments(const std::string& agent, const std::string& group_id) override;
  void SaveAttachment(const Attachment& attachment) override;
  void DeleteAttachment(const std::string& group_id, const std::string& netns_path) override;

 private:
  store::ConnectionPool& pool_;
};

}  // namespace skiff::network
