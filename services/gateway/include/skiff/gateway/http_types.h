#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace skiff::gateway {

// Transport-neutral request and response, so routing and handlers are pure functions tested
// without sockets; the Beast adapter converts at the edge.
struct HttpRequest {
  std::string method;                         // upper-case: GET, PUT, ...
  std::string target;                         // path and query as sent
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  std::string Header(const std::string& name) const {
    for (const auto& [key, value] : headers) {
      if (key == name) return value;
    }
    return {};
  }
};

}  // namespace skiff::gateway
