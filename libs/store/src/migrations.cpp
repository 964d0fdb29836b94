#include "skiff/store/migrations.h"

#include <pqxx/pqxx>
#include <stdexcept>

#include "skiff/log/log.h"

namespace skiff::store {

void CheckMigrations(const std::vector<Migration>& migrations) {
  int previous = 0;
  for (const auto& m : migrations) {
    if (m.version <= previous) {
      throw std::invalid_argument("migration versions must strictly increase (at " + std::to_string(m.version) + ")");
    }
    if (m.name.empty() || m.sql.empty()) {
      throw std::invalid_argument("migration " + std::to_string(m.version) + " needs a name and SQL");
    }
    previous = m.version;
  }
}

int ApplyMigrations(pqxx::connection_base& conn, const std::string& schema, const std::vector<Migration>& migrations) {
  CheckMigrations(migrations);
  int applied = 0;
  {
    pqxx::work tx(conn);
    tx.exec_params("SELECT pg_advisory_xact_lock(hashtext($1))", "skiff.migrations." + schema);
    tx.exec("CREATE SCHEMA IF NOT EXISTS " + tx.quote_name(schema));
    tx.exec("CREATE TABLE IF NOT EXISTS " + tx.quote_name(schema) +
            ".schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())");
    tx.commit();
  }
  for (const auto& m : migrations) {
    pqxx::work tx(conn);
    tx.exec_params("SELECT pg_advisory_xact_lock(hashtext($1))", "skiff.migrations." + schema);
    auto done = tx.exec_params("SELECT 1 FROM " + tx.quote_name(schema) + ".schema_migrations WHERE version = $1",
                               m.version);
    if (!done.empty()) continue;
    tx.exec("SET LOCAL search_path TO " + tx.quote_name(schema));
    tx.exec(m.sql);
    tx.exec_params("INSERT INTO " + tx.quote_name(schema) + ".schema_migrations (version, name) VALUES ($1, $2)",
                   m.version, m.name);
    tx.commit();
    spdlog::info("applied migration {}.{:04d} {}", schema, m.version, m.name);
    ++applied;
  }
  return applied;
}

}  // namespace skiff::store
