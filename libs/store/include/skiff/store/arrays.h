#pragma once

#include <optional>
#include <type_traits>
#include <string>
#include <vector>

namespace skiff::store {

// A Postgres array literal ({"a","b",NULL}) to pass as one text parameter and cast in SQL
// ($1::text[]): a whole batch in one statement with unnest, in every libpqxx version.
std::string ArrayLiteral(const std::vector<std::string>& items);
std::string ArrayLiteral(const std::vector<std::optional<std::string>>& items);
// Appends the shortest text that reads back as exactly `value`.
void AppendNumber(std::string& out, double value);
void AppendNumber(std::string& out, long long value);
template <typename Number>
std::string NumberArrayLiteral(const std::vector<Number>& items) {
  std::string out = "{";
  out.reserve(items.size() * 8 + 2);
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    if constexpr (std::is_floating_point_v<Number>) {
      AppendNumber(out, static_cast<double>(items[i]));
    } else {
      AppendNumber(out, static_cast<long long>(items[i]));
    }
  }
  return out + "}";
}

}  // namespace skiff::store
