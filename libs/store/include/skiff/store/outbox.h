#pragma once

#include <string>
#include <vector>

#include <pqxx/types.hxx>  // forward declarations only

namespace skiff::store {

// The transactional outbox: a service writes its state change and the event announcing it in
// the same Postgres transaction; OutboxRelay later publishes the event. Postgres, not
// JetStream, is the copy that must not be lost.
struct OutboxEntry {
  long long seq = 0;
  std::string event_id;  // UUID; becomes Nats-Msg-Id
  std::string subject;
  std::string payload;   // serialized Protobuf
};

std::string HexEncode(const std::string& bytes);
std::string HexDecode(const std::string& hex);

// SQL that creates <schema>.outbox; add it to the service's migrations.
std::string OutboxTableSql();

// Appends within the caller's transaction.
void AppendToOutbox(pqxx::transaction_base& tx, const std::string& schema, const OutboxEntry& entry);
// Appends many in one statement (a whole batch's events).
void AppendToOutbox(pqxx::transaction_base& tx, const std::string& schema, const std::vector<OutboxEntry>& entries);

}  // namespace skiff::store
