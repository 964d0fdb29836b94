#pragma once

#include <string>
#include <string_view>

#include "skiff/gateway/http_types.h"

namespace skiff::gateway {

// Every error the API can answer. The one table in api_error.cpp maps each to its ARM error
// code and HTTP status; nothing else in the gateway picks a status for an error.
enum class ErrorKind {
  kMalformedJson,
  kRequestTooLarge,
  kBadHttpRequest,
  kMissingApiVersion,
  kUnsupportedApiVersion,
  kMissingToken,
  kInvalidToken,
  kSubscriptionNotFound,
  kResourceNotFound,
  kOperationNotFound,
  kRouteNotFound,
  kMethodNotAllowed,
  kInvalidGroupName,
  kInvalidResourceGroupName,
  kInvalidLocation,
  kMissingContainers,
  kInvalidContainerName,
  kDuplicateContainerName,
  kInvalidImage,
  kInvalidResourceRequests,
  kResourceRequestsExceedLimit,
  kInvalidPort,
  kTooManyPorts,
  kReservedPort,
  kInvalidEnum,
  kUnsupportedOsType,
  kInvalidVolume,
  kIsolationRequired,
  kUndefinedVolume,
  kInvalidEnvironmentVariable,
  kInvalidIpAddress,
  kInvalidTags,
  kInvalidZones,
  kInvalidProbe,
  kContainerNotFound,
  kContainerGroupNotRunning,
  kInvalidExecRequest,
  kInvalidQueryParameter,
  kConcurrentUpdate,
  kGroupQuotaReached,
  kCoresQuotaExceeded,
  kCreateRateLimited,
  kStoreUnavailable,
  kNetworkUnavailable,
  kInternal,
};

struct ApiError {
  ErrorKind kind;
  std::string message;
  std::string target;  // the offending field, when there is one
};

int HttpStatusFor(ErrorKind kind);
std::string_view ArmCodeFor(ErrorKind kind);
// {"error":{"code":...,"message":...}} with the right status.
HttpResponse ErrorResponse(const ApiError& error);
// Another service's ARM error (the network service's refusals), passed on as it was decided.
HttpResponse RelayedErrorResponse(int status, const std::string& code, const std::string& message);

}  // namespace skiff::gateway
