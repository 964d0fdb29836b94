#include "skiff/gateway/routes.h"

#include <boost/algorithm/string/case_conv.hpp>
#include <boost/algorithm/string/predicate.hpp>
#include <cctype>
#include <vector>

namespace skiff::gateway {
namespace {

constexpr std::string_view kProvider = "Microsoft.ContainerInstance";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool Is(const std::string& segment, std::string_view word) { return boost::iequals(segment, word); }

ApiError NotFound(const std::string& path) {
  return {ErrorKind::kRouteNotFound, "No route matches '" + path + "'.", ""};
}

ApiError NotAllowed(const std::string& method, const std::string& allowed) {
  return {ErrorKind::kMethodNotAllowed, "The method '" + method + "' is not allowed here; allowed: " + allowed + ".",
          ""};
}

}  // namespace

bool PercentDecode(const std::string& in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      int high = HexValue(in[i + 1]);
      int low = HexValue(in[i + 2]);
      if (high < 0 || low < 0) return false;
      out += static_cast<char>(high << 4 | low);
      i += 2;
    } else if (in[i] == '+') {
      out += ' ';
    } else {
      out += in[i];
    }
  }
  return true;
}

UrlEncodedResult ParseUrlEncoded(const std::string& text, std::map<std::string, std::string>* out,
                                 bool repeats_allowed) {
  size_t start = 0;
  while (start < text.size()) {
    size_t amp = text.find('&', start);
    if (amp == std::string::npos) amp = text.size();
    std::string pair = text.substr(start, amp - start);
    start = amp + 1;
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key, value;
    if (!PercentDecode(pair.substr(0, eq), key) ||
        !PercentDecode(eq == std::string::npos ? "" : pair.substr(eq + 1), value)) {
      return UrlEncodedResult::kMalformed;
    }
    if (!repeats_allowed && out->count(key)) return UrlEncodedResult::kRepeated;
    (*out)[key] = value;
  }
  return UrlEncodedResult::kOk;
}

std::string PercentEncode(const std::string& in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

std::variant<Route, ApiError> ParseRoute(const std::string& method, const std::string& target) {
  std::string path = target;
  std::string query_string;
  if (auto q = target.find('?'); q != std::string::npos) {
    path = target.substr(0, q);
    query_string = target.substr(q + 1);
  }
  if (path.empty() || path[0] != '/') return ApiError{ErrorKind::kBadHttpRequest, "The request target must be a path.", ""};

  Route route{};
  route.method = method;
  // Query: a=b&c=d, decoded; a malformed escape is a bad request.
  if (ParseUrlEncoded(query_string, &route.query, /*repeats_allowed=*/true) != UrlEncodedResult::kOk) {
    return ApiError{ErrorKind::kBadHttpRequest, "The query string has a malformed percent-escape.", ""};
  }

  std::vector<std::string> segments;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    std::string raw = path.substr(start, slash - start);
    start = slash + 1;
    if (raw.empty()) {
      if (slash == path.size()) break;  // trailing slash
      // ARM's generic resource paths put an empty parent path between the provider namespace
      // and the type (`providers/Microsoft.ContainerInstance//containerGroups/x`, as
      // `az container export` sends them): the same resource.
      if (segments.size() >= 2 && Is(segments[segments.size() - 2], "providers")) continue;
      return NotFound(path);
    }
    std::string decoded;
    if (!PercentDecode(raw, decoded)) {
      return ApiError{ErrorKind::kBadHttpRequest, "The path has a malformed percent-escape.", ""};
    }
    segments.push_back(decoded);
  }

  const size_t n = segments.size();
  // Microsoft.Resources: the account around the groups, as the Azure CLI reads it.
  if (n == 1 && (Is(segments[0], "subscriptions") || Is(segments[0], "tenants"))) {
    route.kind = Is(segments[0], "tenants") ? RouteKind::kTenants : RouteKind::kSubscriptions;
    if (method != "GET") return NotAllowed(method, "GET");
    return route;
  }
  if (n < 2 || !Is(segments[0], "subscriptions")) return NotFound(path);
  // Lower case everywhere it is stored or published, so a URL cased differently finds the same
  // groups (ARM treats subscription ids case-insensitively).
  route.subscription_id = boost::algorithm::to_lower_copy(segments[1]);
  if (n == 2 || (n == 4 && Is(segments[2], "resourceGroups"))) {
    route.kind = n == 2 ? RouteKind::kSubscription : RouteKind::kResourceGroup;
    if (n == 4) route.resource_group = segments[3];
    if (method != "GET" && !(n == 4 && method == "HEAD")) return NotAllowed(method, n == 2 ? "GET" : "GET, HEAD");
    return route;
  }

  // /subscriptions/{s}[/resourceGroups/{rg}]/providers/Microsoft.Network/virtualNetworks[/{name}[/subnets/{subnet}]]
  {
    const bool in_rg = n >= 4 && Is(segments[2], "resourceGroups");
    const size_t at = in_rg ? 4 : 2;
    if (n >= at + 3 && Is(segments[at], "providers") && Is(segments[at + 1], "Microsoft.Network") &&
        Is(segments[at + 2], "virtualNetworks")) {
      route.kind = RouteKind::kVirtualNetworks;
      if (in_rg) route.resource_group = segments[3];
      const size_t rest = n - (at + 3);
      if (rest == 0) {
        if (method != "GET") return NotAllowed(method, "GET");
        return route;
      }
      if (!in_rg) return NotFound(path);
      route.name = segments[at + 3];
      if (rest == 1) {
        if (method != "GET" && method != "PUT" && method != "DELETE") return NotAllowed(method, "GET, PUT, DELETE");
        return route;
      }
      if (rest == 3 && Is(segments[at + 4], "subnets")) {
        route.subnet = segments[at + 5];
        if (method != "GET") return NotAllowed(method, "GET");
        return route;
      }
      return NotFound(path);
    }
  }
  // /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups[/{name}]
  if (n >= 7 && Is(segments[2], "resourceGroups") && Is(segments[4], "providers") && Is(segments[5], kProvider) &&
      Is(segments[6], "containerGroups")) {
    route.resource_group = segments[3];
    if (n == 7) {
      route.kind = RouteKind::kGroupsInResourceGroup;
      if (method != "GET") return NotAllowed(method, "GET");
      return route;
    }
    if (n == 8) {
      route.kind = RouteKind::kGroup;
      route.name = segments[7];
      if (method != "GET" && method != "PUT" && method != "DELETE" && method != "PATCH") {
        return NotAllowed(method, "GET, PUT, PATCH, DELETE");
      }
      return route;
    }
    if (n == 9 && (Is(segments[8], "stop") || Is(segments[8], "start") || Is(segments[8], "restart"))) {
      route.kind = RouteKind::kGroupCommand;
      route.name = segments[7];
      route.command = Is(segments[8], "stop") ? "stop" : Is(segments[8], "start") ? "start" : "restart";
      if (method != "POST") return NotAllowed(method, "POST");
      return route;
    }
    if (n == 11 && Is(segments[8], "providers") &&
        ((Is(segments[9], "Skiff.Billing") && Is(segments[10], "costs")) ||
         (Is(segments[9], "microsoft.Insights") && Is(segments[10], "metrics")))) {
      route.kind = Is(segments[10], "costs") ? RouteKind::kCosts : RouteKind::kGroupMetrics;
      route.name = segments[7];
      if (method != "GET") return NotAllowed(method, "GET");
      return route;
    }
    if (n == 11 && Is(segments[8], "containers")) {
      route.name = segments[7];
      route.container = segments[9];
      if (Is(segments[10], "logs")) {
        route.kind = RouteKind::kContainerLogs;
        if (method != "GET") return NotAllowed(method, "GET");
        return route;
      }
      if (Is(segments[10], "exec") || Is(segments[10], "attach")) {
        route.kind = Is(segments[10], "exec") ? RouteKind::kContainerExec : RouteKind::kContainerAttach;
        if (method != "POST") return NotAllowed(method, "POST");
        return route;
      }
    }
    return NotFound(path);
  }

  // Costs of a subscription or of a resource group.
  if ((n == 5 && Is(segments[2], "providers") && Is(segments[3], "Skiff.Billing") && Is(segments[4], "costs")) ||
      (n == 7 && Is(segments[2], "resourceGroups") && Is(segments[4], "providers") &&
       Is(segments[5], "Skiff.Billing") && Is(segments[6], "costs"))) {
    route.kind = RouteKind::kCosts;
    if (n == 7) route.resource_group = segments[3];
    if (method != "GET") return NotAllowed(method, "GET");
    return route;
  }

  if (n >= 4 && Is(segments[2], "providers") && Is(segments[3], kProvider)) {
    if (n == 5 && Is(segments[4], "containerGroups")) {
      route.kind = RouteKind::kGroupsInSubscription;
      if (method != "GET") return NotAllowed(method, "GET");
      return route;
    }
    if (n == 7 && Is(segments[4], "locations") && (Is(segments[6], "cachedImages") || Is(segments[6], "usages"))) {
      route.kind = Is(segments[6], "usages") ? RouteKind::kUsages : RouteKind::kCachedImages;
      route.location = segments[5];
      if (method != "GET") return NotAllowed(method, "GET");
      return route;
    }
    if (n == 8 && Is(segments[4], "locations") && (Is(segments[6], "operations") || Is(segments[6], "operationResults"))) {
      route.kind = Is(segments[6], "operations") ? RouteKind::kOperationStatus : RouteKind::kOperationResult;
      route.location = segments[5];
      route.operation_id = segments[7];
      if (method != "GET") return NotAllowed(method, "GET");
      return route;
    }
  }
  return NotFound(path);
}

}  // namespace skiff::gateway
