#pragma once

#include <string>
#include <vector>

#include <pqxx/types.hxx>  // forward declarations only

namespace skiff::store {

struct Migration {
  int version;
  std::string name;
  std::string sql;  // runs with search_path set to the service's schema
};

// Checks that versions strictly increase and names are set; throws std::invalid_argument.
void CheckMigrations(const std::vector<Migration>& migrations);

// Applies the migrations not yet recorded in <schema>.schema_migrations, each in its own
// transaction, under an advisory lock so two replicas starting together do not race.
// Each service owns one schema; no service touches another's. Returns how many were applied.
int ApplyMigrations(pqxx::connection_base& conn, const std::string& schema, const std::vector<Migration>& migrations);

}  // namespace skiff::store
