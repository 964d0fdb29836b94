#pragma once

#include <map>
#include <string>
#include <variant>

#include "skiff/gateway/api_error.h"

namespace skiff::gateway {

enum class RouteKind {
  kGroup,                  // .../resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups/{name}
  kGroupsInResourceGroup,  // .../resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups
  kGroupsInSubscription,   // /subscriptions/{s}/providers/Microsoft.ContainerInstance/containerGroups
  kOperationStatus,        // /subscriptions/{s}/providers/Microsoft.ContainerInstance/locations/{l}/operations/{id}
  kOperationResult,        // /subscriptions/{s}/providers/Microsoft.ContainerInstance/locations/{l}/operationResults/{id}
  kCachedImages,           // /subscriptions/{s}/providers/Microsoft.ContainerInstance/locations/{l}/cachedImages
  kContainerLogs,          // {group}/containers/{c}/logs (GET)
  kContainerExec,          // {group}/containers/{c}/exec (POST)
  kContainerAttach,        // {group}/containers/{c}/attach (POST)
  kUsages,                 // /subscriptions/{s}/providers/Microsoft.ContainerInstance/locations/{l}/usages
  kCosts,                  // {subscription | resource group | group}/providers/Skiff.Billing/costs
  kGroupMetrics,           // {group}/providers/microsoft.Insights/metrics
  kGroupCommand,           // {group}/stop | start | restart (POST); the verb is in `command`
  kVirtualNetworks,        // {subscription | resource group}/providers/Microsoft.Network/virtualNetworks[/{name}]
                           // (a list when `name` is empty), and .../{name}/subnets/{subnet} (GET)
  kSubscriptions,          // /subscriptions (GET): the caller's subscriptions
  kSubscription,           // /subscriptions/{s} (GET)
  kTenants,                // /tenants (GET)
  kResourceGroup,          // /subscriptions/{s}/resourceGroups/{rg} (GET, HEAD)
};

struct Route {
  RouteKind kind;
  std::string method;
  std::string subscription_id;
  std::string resource_group;
  std::string name;
  std::string container;
  std::string location;
  std::string operation_id;
  std::string command;
  std::string subnet;
  std::map<std::string, std::string> query;  // decoded

  std::string Query(const std::string& key) const {
    auto it = query.find(key);
    return it == query.end() ? std::string() : it->second;
  }
};

// Parses method + request target into a typed route, or the error to answer (404 for an
// unknown path, 405 for a method the path does not take). ARM's fixed path words are
// case-insensitive; names are percent-decoded.
std::variant<Route, ApiError> ParseRoute(const std::string& method, const std::string& target);

// Percent-decoding; nullopt-like empty+false on a malformed escape.
bool PercentDecode(const std::string& in, std::string& out);
std::string PercentEncode(const std::string& in);

// application/x-www-form-urlencoded (query strings, OAuth2 form bodies) into `out`; with
// repeats allowed the last value of a name wins.
enum class UrlEncodedResult { kOk, kMalformed, kRepeated };
UrlEncodedResult ParseUrlEncoded(const std::string& text, std::map<std::string, std::string>* out,
                                 bool repeats_allowed);

}  // namespace skiff::gateway
