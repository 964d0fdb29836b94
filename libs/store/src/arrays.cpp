#include "skiff/store/arrays.h"

namespace skiff::store {

namespace {

void AppendQuoted(std::string& out, const std::string& item) {
  out += '"';
  for (char c : item) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

}  // namespace

std::string ArrayLiteral(const std::vector<std::string>& items) {
  std::string out = "{";
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
