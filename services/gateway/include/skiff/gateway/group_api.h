#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <string>
#include <variant>

#include "skiff/gateway/api_error.h"
#include "skiff/gateway/clock.h"
#include "skiff/gateway/container_streams.h"
#include "skiff/gateway/group_store.h"
#include "skiff/gateway/http_types.h"
#include "skiff/gateway/identity_api.h"
#include "skiff/gateway/network_link.h"
#include "skiff/gateway/routes.h"
#include "skiff/gateway/usage_sources.h"
#include "skiff/gateway/validation.h"

namespace skiff::crypto {
class SecretBox;
}

namespace skiff::gateway {

// Which images the nodes keep cached (answered by the imagecache service). nullopt: nobody
// answered in time.
class ImageCatalog {
 public:
  struct Entry {
    std::string image;
    std::string os_type;
  };
  virtual ~ImageCatalog() = default;
  virtual std::optional<std::vector<Entry>> CachedImages() = 0;
};

struct GroupApiOptions {
  std::set<std::string> api_versions{"2023-05-01", "2022-10-01-preview"};
  int page_size = 100;
  ValidationLimits limits;
  // Base for URLs the API hands out (nextLink, operation URLs); empty: from the Host header.
  std::string public_url;
  std::chrono::seconds token_cache_ttl{30};
  // The tenant subscriptions and tokens belong to ("adfs", as Azure Stack's ADFS sign-in).
  std::string tenant_id = "adfs";
  // Per subscription, as ACI's defaults: checked when a group is created (or grows). 0: no limit.
  struct Quotas {
    int64_t groups = 100;
    double cores = 100;
    int64_t creates_per_5_minutes = 100;
    int64_t creates_per_hour = 300;
  } quotas;
};

// The ARM container-group API: authenticates, routes, validates and answers one request.
// Pure logic over the GroupStore port; the HTTPS server only moves bytes.
class GroupApi {
 public:
  GroupApi(GroupStore& store, const Clock& clock, const crypto::SecretBox& secrets, GroupApiOptions options,
           std::function<std::string()> new_id);

  HttpResponse Handle(const HttpRequest& request);

  void SetImageCatalog(ImageCatalog* catalog) { image_catalog_ = catalog; }
  // Logs, exec and attach reach the nodes through `nodes`; without it they answer 409.
  void SetNodeLink(NodeLink* nodes) { nodes_ = nodes; }
  // Cost views ask billing; container metrics read the nodes' usage reports.
  void SetBillingLink(BillingLink* billing) { billing_ = billing; }
  void SetUsageHistory(const ContainerUsageHistory* history) { usage_history_ = history; }
  // Addresses, DNS name labels and virtual networks come from the network service; without
  // it groups get no address in their view and the virtual-network API answers 503.
  void SetNetworkLink(NetworkLink* network) { network_ = network; }
  // Sign-in (OAuth2, OpenID discovery, cloud metadata) answered before authentication.
  void SetIdentityApi(IdentityApi* identity) { identity_ = identity; }

  // A WebSocket upgrade to /skiff/streams/<token> (from exec or attach): the session, or a refusal.
  WebSocketDecision OpenStream(const HttpRequest& request);

  // Called after a transaction that wrote an event commits (wakes the outbox relay).
  void OnEventWritten(std::function<void()> callback) { on_event_written_ = std::move(callback); }

 private:
  HttpResponse Dispatch(const HttpRequest& request, const Route& route);
  HttpResponse PutGroup(const HttpRequest& request, const Route& route);
  // The quota or rate-limit refusal for this PUT, if any.
  std::optional<HttpResponse> CheckQuotas(const std::string& subscription_id, const std::optional<GroupRecord>& existing,
                                          const containerinstance::v1::ContainerGroup& group);
  HttpResponse GetGroup(const Route& route);
  HttpResponse DeleteGroup(const HttpRequest& request, const Route& route);
  HttpResponse PatchGroup(const HttpRequest& request, const Route& route);
  HttpResponse ListGroups(const HttpRequest& request, const Route& route);
  HttpResponse GetOperation(const HttpRequest& request, const Route& route);
  HttpResponse ListCachedImages(const Route& route);
  HttpResponse ContainerLogs(const Route& route);
  HttpResponse ContainerStream(const HttpRequest& request, const Route& route);
  // group_commands.cpp
  HttpResponse GroupCommand(const HttpRequest& request, const Route& route);
  // network_api.cpp
  HttpResponse VirtualNetworks(const HttpRequest& request, const Route& route);
  // Claims the group's address and label before it is stored, and writes them into the spec.
  std::optional<HttpResponse> ClaimNetwork(const Route& route, const std::string& group_id,
                                           containerinstance::v1::ContainerGroup& group);
  // identity_api.cpp: subscriptions, tenants, resource groups.
  HttpResponse AccountResource(const Route& route, const std::string& caller_subscription);
  // usage_api.cpp
  HttpResponse ListUsages(const Route& route);
  HttpResponse Costs(const Route& route);
  HttpResponse GroupMetrics(const Route& route);
  // The group and its container, or the error to answer.
  std::variant<GroupRecord, ApiError> FindContainer(const Route& route);

  std::optional<std::string> Authenticate(const HttpRequest& request, ApiError* error);
  std::string BaseUrl(const HttpRequest& request) const;
  std::string OperationUrl(const HttpRequest& request, const Route& route, const std::string& location,
                           const std::string& kind, const std::string& id) const;
  store::OutboxEntry MakeEvent(const GroupRecord& record, const std::string& kind, const std::string& causation_id);
  HttpResponse GroupView(const GroupRecord& record, int status);

  GroupStore& store_;
  const Clock& clock_;
  const crypto::SecretBox& secrets_;
  GroupApiOptions options_;
  std::function<std::string()> new_id_;
  std::function<void()> on_event_written_;
  ImageCatalog* image_catalog_ = nullptr;
  NodeLink* nodes_ = nullptr;
  BillingLink* billing_ = nullptr;
  NetworkLink* network_ = nullptr;
  IdentityApi* identity_ = nullptr;
  const ContainerUsageHistory* usage_history_ = nullptr;
  StreamTickets tickets_;

  struct CachedToken {
    std::string subscription_id;
    std::chrono::steady_clock::time_point fetched;
  };
  std::mutex view_mutex_;
  std::unordered_map<std::string, std::string> rendered_views_;
  std::mutex token_mutex_;
  std::map<std::string, CachedToken> token_cache_;
};

std::string ResourceId(const GroupKey& key);

}  // namespace skiff::gateway
