#pragma once

#include <string>

namespace skiff::store {

// A statement parsed and planned once per connection instead of on every call: libpqxx keeps
// the definition on the connection and prepares it on the server the first time it runs there
// (see ExecPrepared in pool.h).
struct Statement {
  std::string name;  // unique per connection, e.g. "gateway.usage"
  std::string sql;
};

}  // namespace skiff::store
