#pragma once

#include <cstdio>
#include <optional>
#include <type_traits>
#include <string>
#include <vector>

namespace skiff::store {

// A Postgres array literal ({"a","b",NULL}) to pass as one text parameter and cast in SQL
// ($1::text[]): a whole batch in one statement with unnest, in every libpqxx version.
std::string ArrayLiteral(const std::vector<std::string>& items);
std::string ArrayLiteral(const std::vector<std::optional<std::string>>& items);
template <typename Number>
std::string NumberArrayLiteral(const std::vector<Number>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    if constexpr (std::is_floating_point_v<Number>) {
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%.17g", static_cast<double>(items[i]));  // exact round trip
      out += buffer;
    } else {
      out += std::to_string(items[i]);
    }
  }
  return out + "}";
}

}  // namespace skiff::store
