#include "skiff/store/arrays.h"

#include <charconv>
#include <cstring>

namespace skiff::store {

namespace {

void AppendQuoted(std::string& out, const std::string& item) {
  out += '"';
  size_t from = 0;
  while (true) {  // whole runs at a time: an escape is rare
    const size_t special = item.find_first_of("\"\\", from);
    out.append(item, from, special == std::string::npos ? std::string::npos : special - from);
    if (special == std::string::npos) break;
    out += '\\';
    out += item[special];
    from = special + 1;
  }
  out += '"';
}

size_t QuotedSize(const std::vector<std::string>& items) {
  size_t size = 2;
  for (const auto& item : items) size += item.size() + 3;
  return size;
}

}  // namespace

void AppendNumber(std::string& out, double value) {
  char buffer[32];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest exact round trip
  out.append(buffer, result.ptr);
}

void AppendNumber(std::string& out, long long value) {
  char buffer[24];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

std::string ArrayLiteral(const std::vector<std::string>& items) {
  std::string out = "{";
  out.reserve(QuotedSize(items));
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    AppendQuoted(out, items[i]);
  }
  return out + "}";
}

std::string ArrayLiteral(const std::vector<std::optional<std::string>>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    if (items[i]) AppendQuoted(out, *items[i]);
    else out += "NULL";
  }
  return out + "}";
}

}  // namespace skiff::store
