#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "skiff/gateway/api_error.h"

namespace google::protobuf {
template <typename K, typename V>
class Map;
}

namespace skiff::containerinstance::v1 {
class ContainerGroup;
}

namespace skiff::gateway {

struct ValidationLimits {
  double max_cpu_per_group = 4.0;
  double max_memory_gb_per_group = 16.0;
  int max_ports_per_ip = 5;
  std::set<int> reserved_ports;
  std::vector<std::string> locations{"local"};
  // gitRepo volumes clone https:// repositories; http:// only from these hosts ("host" or
  // "host:port"), e.g. a registry of test repositories on the operator's own network.
  std::vector<std::string> git_insecure_hosts;
  // The isolation of a group that names none ("Container" or "MicroVM": scripts/up picks
  // MicroVM where KVM boots guests), and the subscriptions whose groups must run in microVMs.
  std::string default_isolation = "Container";
  std::set<std::string> microvm_subscriptions;
};

// ACI's naming rule for groups and containers: 1-63 of [a-z0-9-], no leading, trailing or
// doubled hyphen.
bool IsValidAciName(const std::string& name);
// ARM's resource group rule: 1-90 of letters, digits, '_', '-', '.', '(', ')'; not ending in '.'.
bool IsValidResourceGroupName(const std::string& name);
// Docker/OCI reference grammar: [host[:port]/]path[:tag][@sha256:<64 hex>].
bool IsValidImageReference(const std::string& image);

// Checks a group from a PUT body against ACI's rules and this deployment's limits, and fills
// defaults and canonical spellings (osType Linux, restartPolicy Always, priority Regular, sku
// Standard; enum values accepted in any case). Returns the first problem found.
std::optional<ApiError> ValidateAndNormalize(containerinstance::v1::ContainerGroup& group, const ValidationLimits& limits);

// The installation's isolation policy for a validated group of `subscription_id`: fills the
// default isolation, and refuses "Container" where the subscription requires "MicroVM"
// (400 IsolationRequired naming properties.isolation).
std::optional<ApiError> ApplyIsolationPolicy(containerinstance::v1::ContainerGroup& group,
                                             const std::string& subscription_id, const ValidationLimits& limits);

// Tags as ARM limits them: at most 50, names <= 512 characters, values <= 256.
std::optional<ApiError> ValidateTags(const google::protobuf::Map<std::string, std::string>& tags);

}  // namespace skiff::gateway
