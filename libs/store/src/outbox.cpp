#include "skiff/store/outbox.h"

#include <pqxx/pqxx>

#include "skiff/store/arrays.h"

namespace skiff::store {

std::string HexEncode(const std::string& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

std::string HexDecode(const std::string& hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 0;
  };
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]));
  return out;
}

std::string OutboxTableSql() {
  return R"sql(
    CREATE TABLE outbox (
      seq          bigserial PRIMARY KEY,
      event_id     uuid NOT NULL UNIQUE,
      subject      text NOT NULL,
      payload      bytea NOT NULL,
      created_at   timestamptz NOT NULL DEFAULT now(),
      published_at timestamptz
    );
    CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
  )sql";
}

void AppendToOutbox(pqxx::transaction_base& tx, const std::string& schema, const OutboxEntry& entry) {
  // The payload travels as hex text and is decoded by Postgres: plain text parameters work the
  // same in every libpqxx version.
  tx.exec_params("INSERT INTO " + tx.quote_name(schema) +
                     ".outbox (event_id, subject, payload) VALUES ($1, $2, decode($3, 'hex'))",
                 entry.event_id, entry.subject, HexEncode(entry.payload));
}

void AppendToOutbox(pqxx::transaction_base& tx, const std::string& schema, const std::vector<OutboxEntry>& entries) {
  if (entries.empty()) return;
  std::vector<std::string> ids, subjects, payloads;
  for (const auto& entry : entries) {
    ids.push_back(entry.event_id);
    subjects.push_back(entry.subject);
    payloads.push_back(HexEncode(entry.payload));
  }
  tx.exec_params("INSERT INTO " + tx.quote_name(schema) +
                     ".outbox (event_id, subject, payload) SELECT id::uuid, subject, decode(payload, 'hex') "
                     "FROM unnest($1::text[], $2::text[], $3::text[]) AS e(id, subject, payload)",
                 ArrayLiteral(ids), ArrayLiteral(subjects), ArrayLiteral(payloads));
}

}  // namespace skiff::store
