#include "skiff/gateway/group_api.h"

#include <google/protobuf/util/time_util.h>

#include <boost/algorithm/string/predicate.hpp>
#include <ctime>
#include <sstream>

#include "skiff/crypto/crypto.h"
#include "skiff/secrets/group_secrets.h"
#include "skiff/events/v1/group_events.pb.h"
#include "skiff/gateway/group_codec.h"
#include "skiff/log/log.h"

namespace skiff::gateway {
namespace ci = containerinstance::v1;
namespace {

constexpr const char* kResourceType = "Microsoft.ContainerInstance/containerGroups";
constexpr int kWriteAttempts = 5;

HttpResponse Json(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  response.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
  return response;
}

ApiError NotFoundError(const GroupKey& key) {
  return {ErrorKind::kResourceNotFound,
          std::string("The Resource '") + kResourceType + "/" + key.name + "' under resource group '" +
              key.resource_group + "' was not found.",
          ""};
}

// 2023-05-01 or 2023-05-01-preview.
bool IsDatedApiVersion(const std::string& v) {
  if (v.size() != 10 && !(v.size() == 18 && v.compare(10, 8, "-preview") == 0)) return false;
  for (size_t i = 0; i < 10; ++i) {
    if ((i == 4 || i == 7) ? v[i] != '-' : !std::isdigit(static_cast<unsigned char>(v[i]))) return false;
  }
  return true;
}

bool IsSafeHost(const std::string& host) {
  if (host.empty() || host.size() > 255) return false;
  for (unsigned char c : host) {
    if (!(std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']')) return false;
  }
  return true;
}

std::string EncodeCursor(const ListCursor& cursor) {
  return PercentEncode(crypto::Base64Encode(cursor.resource_group_key + "\n" + cursor.name_key));
}

std::optional<ListCursor> DecodeCursor(const std::string& token) {
  auto raw = crypto::Base64Decode(token);
  if (!raw) return std::nullopt;
  auto newline = raw->find('\n');
  if (newline == std::string::npos) return std::nullopt;
  return ListCursor{raw->substr(0, newline), raw->substr(newline + 1)};
}

}  // namespace

std::string Lower(const std::string& s) {
  std::string out = s;
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string ResourceId(const GroupKey& key) {
  return "/subscriptions/" + key.subscription_id + "/resourceGroups/" + key.resource_group + "/providers/" +
         kResourceType + "/" + key.name;
}

GroupApi::GroupApi(GroupStore& store, const Clock& clock, const crypto::SecretBox& secrets, GroupApiOptions options,
                   std::function<std::string()> new_id)
    : store_(store), clock_(clock), secrets_(secrets), options_(std::move(options)), new_id_(std::move(new_id)) {}

HttpResponse GroupApi::Handle(const HttpRequest& request) {
  try {
    if (identity_ && IdentityApi::Serves(request.target)) return identity_->Handle(request, BaseUrl(request));
    ApiError auth_error{};
    auto subscription = Authenticate(request, &auth_error);
    if (!subscription) return ErrorResponse(auth_error);

    auto parsed = ParseRoute(request.method, request.target);
    if (auto* error = std::get_if<ApiError>(&parsed)) return ErrorResponse(*error);
    const Route& route = std::get<Route>(parsed);

    auto version = route.query.find("api-version");
    if (version == route.query.end() || version->second.empty()) {
      return ErrorResponse({ErrorKind::kMissingApiVersion, "The api-version query parameter is required.", ""});
    }
    // Metrics answer in Azure Monitor's api-versions, as ACI's do.
    const bool monitor_version = route.kind == RouteKind::kGroupMetrics &&
                                 (version->second == "2018-01-01" || version->second == "2019-07-01" ||
                                  version->second == "2023-10-01");
    // Virtual networks take Microsoft.Network's dated versions; the part Skiff serves is the
    // same in all of them.
    const bool network_version = route.kind == RouteKind::kVirtualNetworks && IsDatedApiVersion(version->second);
    // Likewise Microsoft.Resources' (subscriptions, tenants, resource groups).
    const bool account_route = route.kind == RouteKind::kSubscriptions || route.kind == RouteKind::kTenants ||
                               route.kind == RouteKind::kSubscription || route.kind == RouteKind::kResourceGroup;
    if (account_route && !IsDatedApiVersion(version->second)) {
      return ErrorResponse({ErrorKind::kUnsupportedApiVersion,
                            "The api-version '" + version->second + "' is not a dated version (YYYY-MM-DD).", ""});
    }
    if (route.kind == RouteKind::kSubscriptions || route.kind == RouteKind::kTenants) {
      return AccountResource(route, *subscription);
    }
    if (!account_route && !monitor_version && !network_version && options_.api_versions.count(version->second) == 0) {
      std::string list;
      for (const auto& v : options_.api_versions) list += (list.empty() ? "" : ", ") + v;
      return ErrorResponse({ErrorKind::kUnsupportedApiVersion,
                            "The api-version '" + version->second + "' is not supported; supported: " + list + ".", ""});
    }
    // A token sees only its own subscription; any other answers as if it did not exist.
    if (!boost::iequals(route.subscription_id, *subscription)) {
      return ErrorResponse({ErrorKind::kSubscriptionNotFound,
                            "The subscription '" + route.subscription_id + "' could not be found.", ""});
    }
    return Dispatch(request, route);
  } catch (const StoreUnavailable& e) {
    spdlog::warn("store unavailable: {}", e.what());
    return ErrorResponse({ErrorKind::kStoreUnavailable, "The service is temporarily unavailable; retry later.", ""});
  } catch (const std::exception& e) {
    spdlog::error("unexpected error handling {} {}: {}", request.method, request.target, e.what());
    return ErrorResponse({ErrorKind::kInternal, "An internal error occurred.", ""});
  }
}

std::optional<std::string> GroupApi::Authenticate(const HttpRequest& request, ApiError* error) {
  std::string header = request.Header("authorization");
  if (header.empty()) {
    *error = {ErrorKind::kMissingToken, "Authentication failed. The 'Authorization' header is missing.", ""};
    return std::nullopt;
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (header.size() <= kBearer.size() || !boost::istarts_with(header, kBearer)) {
    *error = {ErrorKind::kInvalidToken, "The 'Authorization' header must be 'Bearer <token>'.", ""};
    return std::nullopt;
  }
  std::string hash = crypto::HashApiToken(header.substr(kBearer.size()));
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(token_mutex_);
    auto it = token_cache_.find(hash);
    if (it != token_cache_.end() && now - it->second.fetched < options_.token_cache_ttl) return it->second.subscription_id;
  }
  auto subscription = store_.SubscriptionForToken(hash);
  if (!subscription) {
    *error = {ErrorKind::kInvalidToken, "The access token is invalid or expired.", ""};
    return std::nullopt;
  }
  std::lock_guard lock(token_mutex_);
  if (token_cache_.size() > 10000) token_cache_.clear();  // bound memory under token churn
  token_cache_[hash] = {*subscription, now};
  return subscription;
}

HttpResponse GroupApi::Dispatch(const HttpRequest& request, const Route& route) {
  switch (route.kind) {
    case RouteKind::kGroup:
      if (!IsValidResourceGroupName(route.resource_group)) {
        return ErrorResponse({ErrorKind::kInvalidResourceGroupName,
                              "The resource group name '" + route.resource_group + "' is invalid.", ""});
      }
      if (!IsValidAciName(route.name)) {
        return ErrorResponse({ErrorKind::kInvalidGroupName,
                              "The container group name '" + route.name +
                                  "' is invalid: use 1-63 lower-case letters, digits and single hyphens, not at "
                                  "either end.",
                              ""});
      }
      if (route.method == "PUT") return PutGroup(request, route);
      if (route.method == "GET") return GetGroup(route);
      if (route.method == "DELETE") return DeleteGroup(request, route);
      return PatchGroup(request, route);
    case RouteKind::kGroupsInResourceGroup:
    case RouteKind::kGroupsInSubscription:
      return ListGroups(request, route);
    case RouteKind::kOperationStatus:
    case RouteKind::kOperationResult:
      return GetOperation(request, route);
    case RouteKind::kCachedImages:
      return ListCachedImages(route);
    case RouteKind::kContainerLogs:
      return ContainerLogs(route);
    case RouteKind::kContainerExec:
    case RouteKind::kContainerAttach:
      return ContainerStream(request, route);
    case RouteKind::kUsages:
      return ListUsages(route);
    case RouteKind::kCosts:
      return Costs(route);
    case RouteKind::kGroupMetrics:
      return GroupMetrics(route);
    case RouteKind::kGroupCommand:
      return GroupCommand(request, route);
    case RouteKind::kVirtualNetworks:
      return VirtualNetworks(request, route);
    case RouteKind::kSubscriptions:
    case RouteKind::kSubscription:
    case RouteKind::kTenants:
    case RouteKind::kResourceGroup:
      return AccountResource(route, route.subscription_id);
  }
  return ErrorResponse({ErrorKind::kRouteNotFound, "No such route.", ""});
}

std::string GroupApi::BaseUrl(const HttpRequest& request) const {
  if (!options_.public_url.empty()) return options_.public_url;
  std::string host = request.Header("host");
  return IsSafeHost(host) ? "https://" + host : "https://localhost";
}

std::string GroupApi::OperationUrl(const HttpRequest& request, const Route& route, const std::string& location,
                                   const std::string& kind, const std::string& id) const {
  return BaseUrl(request) + "/subscriptions/" + route.subscription_id +
         "/providers/Microsoft.ContainerInstance/locations/" + location + "/" + kind + "/" + id +
         "?api-version=" + PercentEncode(route.Query("api-version"));
}

store::OutboxEntry GroupApi::MakeEvent(const GroupRecord& record, const std::string& kind,
                                       const std::string& causation_id) {
  events::v1::GroupEvent event;
  event.set_event_id(new_id_());
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch()).count();
  *event.mutable_occurred_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(millis);
  event.set_causation_id(causation_id);
  auto* ref = event.mutable_group();
  ref->set_subscription_id(record.key.subscription_id);
  ref->set_resource_group(record.key.resource_group);
  ref->set_name(record.key.name);
  ref->set_group_id(record.group_id);
  ref->set_generation(record.generation);
  if (kind == "created") {
    *event.mutable_created()->mutable_spec() = record.spec;
  } else if (kind == "updated" || kind == "tags-updated") {
    *event.mutable_updated()->mutable_spec() = record.spec;
    event.mutable_updated()->set_tags_only(kind == "tags-updated");
  } else {
    event.mutable_deleted();
  }
  std::string subject = "skiff.events.group." + std::string(kind == "tags-updated" ? "updated" : kind);
  return {0, event.event_id(), subject, event.SerializeAsString()};
}

HttpResponse GroupApi::GroupView(const GroupRecord& record, int status) {
  // A (group_id, generation) pair names one immutable document, so its rendering is memoised:
  // protobuf's JSON printer dominates the cost of a GET otherwise.
  const std::string memo_key = record.group_id + "#" + std::to_string(record.generation) + "#" +
                               std::to_string(record.runtime ? record.runtime->version : 0);
  {
    std::lock_guard lock(view_mutex_);
    auto it = rendered_views_.find(memo_key);
    if (it != rendered_views_.end()) return Json(status, it->second);
  }
  ci::ContainerGroup view = record.spec;
  RedactSecrets(view);
  view.set_id(ResourceId(record.key));
  view.set_name(record.key.name);
  view.set_type(kResourceType);
  if (record.runtime) MergeRuntime(*record.runtime, view);
  std::string json = ToJson(view);
  std::lock_guard lock(view_mutex_);
  if (rendered_views_.size() >= 10000) rendered_views_.clear();  // bounded memory
  rendered_views_.emplace(memo_key, json);
  return Json(status, std::move(json));
}

namespace {
std::string FormatNumber(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}
}  // namespace

std::optional<HttpResponse> GroupApi::CheckQuotas(const std::string& subscription_id,
                                                  const std::optional<GroupRecord>& existing,
                                                  const ci::ContainerGroup& group) {
  const auto& quotas = options_.quotas;
  if (quotas.groups <= 0 && quotas.cores <= 0 && quotas.creates_per_5_minutes <= 0 && quotas.creates_per_hour <= 0) {
    return std::nullopt;  // all off: nothing to read
  }
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch()).count();
  const SubscriptionUsage usage =
      store_.Usage(subscription_id, now_ms, std::max(quotas.creates_per_5_minutes, quotas.creates_per_hour) + 1);
  const std::string region = group.location().empty() ? "local" : group.location();
  if (!existing) {
    auto limited = [&](int64_t oldest_ms, int64_t window_ms, const std::string& window) {
      const int64_t wait_s = std::max<int64_t>(1, (oldest_ms + window_ms - now_ms + 999) / 1000);
      HttpResponse response = ErrorResponse(
          {ErrorKind::kCreateRateLimited,
           "The subscription created too many container groups in the last " + window + "; retry after " +
               std::to_string(wait_s) + " seconds.",
           ""});
      response.headers.emplace_back("Retry-After", std::to_string(wait_s));
      return response;
    };
    if (quotas.creates_per_5_minutes > 0 && usage.creates_last_5_minutes >= quotas.creates_per_5_minutes) {
      return limited(usage.oldest_create_in_5_minutes_ms, 5 * 60 * 1000, "5 minutes");
    }
    if (quotas.creates_per_hour > 0 && usage.creates_last_hour >= quotas.creates_per_hour) {
      return limited(usage.oldest_create_in_hour_ms, 60 * 60 * 1000, "hour");
    }
    if (quotas.groups > 0 && usage.groups + 1 > quotas.groups) {
      return ErrorResponse({ErrorKind::kGroupQuotaReached,
                            "Resource type 'Microsoft.ContainerInstance/containerGroups' container group quota "
                            "'ContainerGroups' exceeded in region '" +
                                region + "'. Limit: '" + std::to_string(quotas.groups) + "', Usage: '" +
                                std::to_string(usage.groups) + "' Requested: '1'.",
                            ""});
    }
  }
  const double wanted = RequestedCores(group);
  const double held = existing ? RequestedCores(existing->spec) : 0;
  if (quotas.cores > 0 && wanted > held && usage.cores - held + wanted > quotas.cores + 1e-9) {
    return ErrorResponse({ErrorKind::kCoresQuotaExceeded,
                          "Resource type 'Microsoft.ContainerInstance/containerGroups' quota 'StandardCores' exceeded "
                          "in region '" +
                              region + "'. Limit: '" + FormatNumber(quotas.cores) + "', Usage: '" +
                              FormatNumber(usage.cores - held) + "' Requested: '" + FormatNumber(wanted) + "'.",
                          "properties.containers"});
  }
  return std::nullopt;
}

HttpResponse GroupApi::PutGroup(const HttpRequest& request, const Route& route) {
  auto parsed = ParseGroupJson(request.body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return ErrorResponse(*error);
  ci::ContainerGroup group = std::move(std::get<ci::ContainerGroup>(parsed));
  if (auto error = ValidateAndNormalize(group, options_.limits)) return ErrorResponse(*error);
  if (auto error = ApplyIsolationPolicy(group, route.subscription_id, options_.limits)) return ErrorResponse(*error);
  group.clear_id();
  group.clear_name();
  group.clear_type();
  group.mutable_properties()->set_provisioning_state("Pending");
  group.mutable_properties()->clear_instance_view();
  for (auto& container : *group.mutable_properties()->mutable_containers()) {
    container.mutable_properties()->clear_instance_view();
  }
  for (auto& init : *group.mutable_properties()->mutable_init_containers()) {
    init.mutable_properties()->clear_instance_view();
  }

  GroupKey key{route.subscription_id, route.resource_group, route.name};
  std::string request_id = request.Header("x-ms-client-request-id");
  std::string new_group_id;  // chosen once: the network claim is made for it
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    auto existing = store_.Find(key);
    // Counted before the write, so two creates racing at the limit may both pass: quotas are a
    // guard against runaway use, not an exact ledger (ACI's are eventually consistent too).
    if (attempt == 0) {
      if (auto refusal = CheckQuotas(route.subscription_id, existing, group)) return *refusal;
    }
    if (!existing && new_group_id.empty()) new_group_id = new_id_();
    if (auto refusal = ClaimNetwork(route, existing ? existing->group_id : new_group_id, group)) return *refusal;
    GroupRecord record;
    record.spec = group;
    // Sealed for this subscription and group only (see libs/secrets), every value as sent.
    secrets::SealAll(record.spec, secrets_, route.subscription_id, existing ? existing->group_id : new_group_id);
    OperationRecord operation;
    operation.id = new_id_();
    operation.subscription_id = route.subscription_id;
    operation.status = "InProgress";
    operation.started_at = FormatTime(clock_.Now());
    bool written = false;
    if (!existing) {
      record.key = key;
      record.group_id = new_group_id;
      record.generation = 1;
      operation.kind = "create";
      operation.resource_id = ResourceId(record.key);
      written = store_.Insert(record, operation, MakeEvent(record, "created", request_id.empty() ? operation.id : request_id));
    } else {
      record.key = existing->key;
      record.group_id = existing->group_id;
      record.generation = existing->generation + 1;
      operation.kind = "update";
      operation.resource_id = ResourceId(record.key);
      written = store_.Update(record, existing->generation, operation,
                              MakeEvent(record, "updated", request_id.empty() ? operation.id : request_id));
    }
    if (!written) continue;  // lost a race with another writer; read again
    if (on_event_written_) on_event_written_();
    HttpResponse response = GroupView(record, existing ? 200 : 201);
    response.headers.emplace_back("Azure-AsyncOperation",
                                  OperationUrl(request, route, group.location(), "operations", operation.id));
    // Groups here start within seconds: pollers (azure-core waits 30 s without it) ask again soon.
    response.headers.emplace_back("Retry-After", "1");
    return response;
  }
  return ErrorResponse({ErrorKind::kConcurrentUpdate,
                        "The container group was changed by another request at the same time; retry.", ""});
}

HttpResponse GroupApi::GetGroup(const Route& route) {
  GroupKey key{route.subscription_id, route.resource_group, route.name};
  auto record = store_.Find(key);
  if (!record) return ErrorResponse(NotFoundError(key));
  return GroupView(*record, 200);
}

std::variant<GroupRecord, ApiError> GroupApi::FindContainer(const Route& route) {
  GroupKey key{route.subscription_id, route.resource_group, route.name};
  if (!IsValidResourceGroupName(route.resource_group) || !IsValidAciName(route.name)) return NotFoundError(key);
  auto record = store_.Find(key);
  if (!record) return NotFoundError(key);
  const auto& props = record->spec.properties();
  for (const auto& c : props.containers()) {
    if (c.name() == route.container) return *record;
  }
  for (const auto& c : props.init_containers()) {
    if (c.name() == route.container) return *record;
  }
  return ApiError{ErrorKind::kContainerNotFound,
                  "The container '" + route.container + "' is not in the container group '" + route.name + "'.", ""};
}

HttpResponse GroupApi::ContainerLogs(const Route& route) {
  node::v1::LogsRequest request;
  if (auto tail = route.Query("tail"); !tail.empty()) {
    if (tail.size() > 7 || tail.find_first_not_of("0123456789") != std::string::npos) {
      return ErrorResponse({ErrorKind::kInvalidQueryParameter,
                            "The query parameter 'tail' must be a whole number from 0 to 9999999.", "tail"});
    }
    request.set_tail(std::stoi(tail));
  }
  const std::string timestamps = route.Query("timestamps");
  if (!timestamps.empty() && timestamps != "true" && timestamps != "false") {
    return ErrorResponse({ErrorKind::kInvalidQueryParameter, "The query parameter 'timestamps' must be true or false.",
                          "timestamps"});
  }
  request.set_timestamps(timestamps == "true");
  auto found = FindContainer(route);
  if (auto* error = std::get_if<ApiError>(&found)) return ErrorResponse(*error);
  const auto& record = std::get<GroupRecord>(found);
  request.set_group_id(record.group_id);
  request.set_container(route.container);
  if (record.runtime) request.set_node_id(record.runtime->node_id);
  auto reply = nodes_ && !request.node_id().empty() ? nodes_->ContainerLogs(request) : std::nullopt;
  if (!reply || !reply->found()) {
    return ErrorResponse({ErrorKind::kContainerGroupNotRunning,
                          "The container group '" + route.name + "' is not on any node yet, so it has no logs.", ""});
  }
  containerinstance::v1::Logs logs;
  logs.set_content(reply->content());
  HttpResponse response;
  response.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
  response.body = ToJson(logs);
  return response;
}

HttpResponse GroupApi::ContainerStream(const HttpRequest& request, const Route& route) {
  StreamTicket ticket;
  const std::string session_id = crypto::NewUuid();
  if (route.kind == RouteKind::kContainerExec) {
    auto parsed = ParseExecRequestJson(request.body);
    if (auto* error = std::get_if<ApiError>(&parsed)) return ErrorResponse(*error);
    const auto& body = std::get<containerinstance::v1::ContainerExecRequest>(parsed);
    // ACI runs one program; Skiff also splits arguments on white space ("/bin/sh -c ls" works).
    std::vector<std::string> command;
    std::istringstream words(body.command());
    for (std::string word; words >> word;) command.push_back(word);
    if (command.empty() || body.command().size() > 4096) {
      return ErrorResponse({ErrorKind::kInvalidExecRequest, "The exec request needs a command of at most 4096 characters.",
                            "command"});
    }
    const auto& size = body.terminal_size();
    // 0 (or absent) is a terminal of unknown size: the Azure CLI sends 0x0 when its own pty
    // reports none. It gets 24x80.
    const int rows = size.has_rows() && size.rows() != 0 ? size.rows() : 24;
    const int cols = size.has_cols() && size.cols() != 0 ? size.cols() : 80;
    for (const auto& [value, name] : {std::pair{rows, "rows"}, std::pair{cols, "cols"}}) {
      if (value < 1 || value > 1000) {
        return ErrorResponse({ErrorKind::kInvalidExecRequest,
                              std::string("terminalSize.") + name + " must be from 0 (unknown) to 1000.",
                              std::string("terminalSize.") + name});
      }
    }
    node::v1::ExecRequest exec;
    for (const auto& word : command) exec.add_command(word);
    exec.set_tty(body.has_terminal_size());
    exec.set_rows(static_cast<uint32_t>(rows));
    exec.set_cols(static_cast<uint32_t>(cols));
    exec.set_session_id(session_id);
    exec.set_container(route.container);
    ticket.exec = exec;
  } else {
    node::v1::AttachRequest attach;
    attach.set_session_id(session_id);
    attach.set_container(route.container);
    ticket.attach = attach;
  }
  auto found = FindContainer(route);
  if (auto* error = std::get_if<ApiError>(&found)) return ErrorResponse(*error);
  const GroupRecord& record = std::get<GroupRecord>(found);
  const std::string node_id = record.runtime ? record.runtime->node_id : "";
  if (ticket.exec) {
    ticket.exec->set_group_id(record.group_id);
    ticket.exec->set_node_id(node_id);
  }
  if (ticket.attach) {
    ticket.attach->set_group_id(record.group_id);
    ticket.attach->set_node_id(node_id);
  }
  const std::string password = crypto::NewUuid();
  ticket.password = password;
  std::string token = tickets_.Issue(std::move(ticket), std::chrono::steady_clock::now());
  containerinstance::v1::ContainerStreamResponse body;
  std::string base = BaseUrl(request);
  body.set_web_socket_uri("wss://" + base.substr(base.find("://") + 3) + "/skiff/streams/" + token);
  body.set_password(password);
  HttpResponse response;
  response.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
  response.body = ToJson(body);
  return response;
}

WebSocketDecision GroupApi::OpenStream(const HttpRequest& request) {
  WebSocketDecision decision;
  constexpr std::string_view kPrefix = "/skiff/streams/";
  std::string token = request.target.compare(0, kPrefix.size(), kPrefix) == 0 ? request.target.substr(kPrefix.size())
                                                                              : std::string();
  auto ticket = nodes_ && !token.empty() ? tickets_.Redeem(token, std::chrono::steady_clock::now()) : std::nullopt;
  if (!ticket) {
    decision.refusal = ErrorResponse({ErrorKind::kRouteNotFound,
                                      "No exec or attach session has this address, or it was used or has expired.", ""});
    return decision;
  }
  decision.session = std::make_shared<StreamBridge>(*nodes_, std::move(*ticket));
  return decision;
}

HttpResponse GroupApi::DeleteGroup(const HttpRequest& request, const Route& route) {
  GroupKey key{route.subscription_id, route.resource_group, route.name};
  std::string request_id = request.Header("x-ms-client-request-id");
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    auto existing = store_.Find(key);
    if (!existing) {
      HttpResponse response;
      response.status = 204;
      return response;
    }
    OperationRecord operation;
    operation.id = new_id_();
    operation.subscription_id = route.subscription_id;
    operation.kind = "delete";
    operation.resource_id = ResourceId(existing->key);
    // The ARM resource is gone once this commits; nodes, network and billing release what they
    // hold when they see GroupDeleted.
    operation.status = "Succeeded";
    operation.started_at = FormatTime(clock_.Now());
    operation.ended_at = operation.started_at;
    if (!store_.Remove(existing->key, existing->generation, operation,
                       MakeEvent(*existing, "deleted", request_id.empty() ? operation.id : request_id))) {
      continue;
    }
    if (on_event_written_) on_event_written_();
    HttpResponse response;
    response.status = 202;
    const std::string location = existing->spec.location();
    response.headers.emplace_back("Location", OperationUrl(request, route, location, "operationResults", operation.id));
    response.headers.emplace_back("Azure-AsyncOperation",
                                  OperationUrl(request, route, location, "operations", operation.id));
    response.headers.emplace_back("Retry-After", "1");
    return response;
  }
  return ErrorResponse({ErrorKind::kConcurrentUpdate,
                        "The container group was changed by another request at the same time; retry.", ""});
}

HttpResponse GroupApi::PatchGroup(const HttpRequest& request, const Route& route) {
  auto parsed = ParseTagsPatchJson(request.body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return ErrorResponse(*error);
  const auto& patch = std::get<ci::ResourceTagsPatch>(parsed);
  if (auto error = ValidateTags(patch.tags())) return ErrorResponse(*error);
  GroupKey key{route.subscription_id, route.resource_group, route.name};
  std::string request_id = request.Header("x-ms-client-request-id");
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    auto existing = store_.Find(key);
    if (!existing) return ErrorResponse(NotFoundError(key));
    GroupRecord record = *existing;
    *record.spec.mutable_tags() = patch.tags();
    record.generation = existing->generation + 1;
    if (!store_.Update(record, existing->generation, std::nullopt,
                       MakeEvent(record, "tags-updated", request_id.empty() ? new_id_() : request_id))) {
      continue;
    }
    if (on_event_written_) on_event_written_();
    return GroupView(record, 200);
  }
  return ErrorResponse({ErrorKind::kConcurrentUpdate,
                        "The container group was changed by another request at the same time; retry.", ""});
}

HttpResponse GroupApi::ListGroups(const HttpRequest& request, const Route& route) {
  std::optional<ListCursor> after;
  std::string token = route.Query("$skipToken");
  if (!token.empty()) {
    after = DecodeCursor(token);
    if (!after) return ErrorResponse({ErrorKind::kBadHttpRequest, "The $skipToken is not valid.", ""});
  }
  if (route.kind == RouteKind::kGroupsInResourceGroup && !IsValidResourceGroupName(route.resource_group)) {
    return ErrorResponse({ErrorKind::kInvalidResourceGroupName,
                          "The resource group name '" + route.resource_group + "' is invalid.", ""});
  }
  const std::string resource_group = route.kind == RouteKind::kGroupsInResourceGroup ? route.resource_group : "";
  auto records = store_.List(route.subscription_id, resource_group, after, options_.page_size + 1);
  ci::ContainerGroupListResult result;
  const bool more = static_cast<int>(records.size()) > options_.page_size;
  if (more) records.resize(static_cast<size_t>(options_.page_size));
  for (const auto& record : records) {
    ci::ContainerGroup* view = result.add_value();
    *view = record.spec;
    RedactSecrets(*view);
    view->set_id(ResourceId(record.key));
    view->set_name(record.key.name);
    view->set_type(kResourceType);
    if (record.runtime) MergeRuntime(*record.runtime, *view);
  }
  if (more) {
    const auto& last = records.back().key;
    std::string path = request.target.substr(0, request.target.find('?'));
    result.set_next_link(BaseUrl(request) + path + "?api-version=" + PercentEncode(route.Query("api-version")) +
                         "&$skipToken=" + EncodeCursor({Lower(last.resource_group), Lower(last.name)}));
  }
  return Json(200, ToJson(result));
}

HttpResponse GroupApi::ListCachedImages(const Route& route) {
  bool known_location = false;
  for (const auto& location : options_.limits.locations) known_location |= boost::iequals(location, route.location);
  if (!known_location) {
    return ErrorResponse({ErrorKind::kInvalidLocation, "The location '" + route.location + "' is not available.", ""});
  }
  auto images = image_catalog_ ? image_catalog_->CachedImages() : std::nullopt;
  if (!images) {
    return ErrorResponse({ErrorKind::kStoreUnavailable, "No image cache answered; retry later.", ""});
  }
  ci::CachedImagesListResult result;
  std::set<std::string> seen;
  for (const auto& entry : *images) {
    if (!seen.insert(entry.image).second) continue;
    auto* item = result.add_value();
    item->set_image(entry.image);
    item->set_os_type(entry.os_type);
  }
  return Json(200, ToJson(result));
}

HttpResponse GroupApi::GetOperation(const HttpRequest& request, const Route& route) {
  auto operation = crypto::IsUuid(route.operation_id) ? store_.FindOperation(route.subscription_id, route.operation_id)
                                                      : std::nullopt;
  if (!operation) {
    return ErrorResponse({ErrorKind::kOperationNotFound, "The operation '" + route.operation_id + "' was not found.", ""});
  }
  if (route.kind == RouteKind::kOperationResult) {
    // ARM's Location protocol: 202 while running, then the final answer.
    HttpResponse response;
    if (operation->status == "InProgress") {
      response.status = 202;
      response.headers.emplace_back("Location", BaseUrl(request) + request.target);
      response.headers.emplace_back("Retry-After", "1");
    } else if (operation->status == "Failed") {
      return ErrorResponse({ErrorKind::kInternal, operation->error_message, ""});
    } else {
      response.status = 204;
    }
    return response;
  }
  ci::OperationStatus status;
  status.set_id(route.operation_id);
  status.set_name(route.operation_id);
  status.set_status(operation->status);
  status.set_start_time(operation->started_at);
  if (!operation->ended_at.empty()) status.set_end_time(operation->ended_at);
  if (!operation->error_code.empty()) {
    status.mutable_error()->set_code(operation->error_code);
    status.mutable_error()->set_message(operation->error_message);
  }
  HttpResponse response = Json(200, ToJson(status));
  if (operation->status == "InProgress") response.headers.emplace_back("Retry-After", "1");
  return response;
}

}  // namespace skiff::gateway
