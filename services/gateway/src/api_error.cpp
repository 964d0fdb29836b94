#include "skiff/gateway/api_error.h"

#include <google/protobuf/util/json_util.h>

#include <array>

#include "skiff/containerinstance/v1/container_group.pb.h"

namespace skiff::gateway {
namespace {

struct ErrorRow {
  ErrorKind kind;
  std::string_view arm_code;
  int http_status;
};

// The one place where errors meet the wire.
constexpr std::array kErrorTable{
    ErrorRow{ErrorKind::kMalformedJson, "InvalidRequestContent", 400},
    ErrorRow{ErrorKind::kRequestTooLarge, "RequestEntityTooLarge", 413},
    ErrorRow{ErrorKind::kBadHttpRequest, "BadRequest", 400},
    ErrorRow{ErrorKind::kMissingApiVersion, "MissingApiVersionParameter", 400},
    ErrorRow{ErrorKind::kUnsupportedApiVersion, "InvalidApiVersionParameter", 400},
    ErrorRow{ErrorKind::kMissingToken, "AuthenticationFailed", 401},
    ErrorRow{ErrorKind::kInvalidToken, "InvalidAuthenticationToken", 401},
    ErrorRow{ErrorKind::kSubscriptionNotFound, "SubscriptionNotFound", 404},
    ErrorRow{ErrorKind::kResourceNotFound, "ResourceNotFound", 404},
    ErrorRow{ErrorKind::kOperationNotFound, "OperationNotFound", 404},
    ErrorRow{ErrorKind::kRouteNotFound, "NotFound", 404},
    ErrorRow{ErrorKind::kMethodNotAllowed, "MethodNotAllowed", 405},
    ErrorRow{ErrorKind::kInvalidGroupName, "InvalidContainerGroupName", 400},
    ErrorRow{ErrorKind::kInvalidResourceGroupName, "InvalidResourceGroupName", 400},
    ErrorRow{ErrorKind::kInvalidLocation, "LocationNotAvailableForResourceType", 400},
    ErrorRow{ErrorKind::kMissingContainers, "MissingContainers", 400},
    ErrorRow{ErrorKind::kInvalidContainerName, "InvalidContainerName", 400},
    ErrorRow{ErrorKind::kDuplicateContainerName, "DuplicateContainerName", 400},
    ErrorRow{ErrorKind::kInvalidImage, "InvalidImageName", 400},
    ErrorRow{ErrorKind::kInvalidResourceRequests, "InvalidResourceRequests", 400},
    ErrorRow{ErrorKind::kResourceRequestsExceedLimit, "ResourceRequestsExceedLimit", 400},
    ErrorRow{ErrorKind::kInvalidPort, "InvalidPort", 400},
    ErrorRow{ErrorKind::kTooManyPorts, "TooManyPorts", 400},
    ErrorRow{ErrorKind::kReservedPort, "ReservedPort", 400},
    ErrorRow{ErrorKind::kInvalidEnum, "InvalidEnumValue", 400},
    ErrorRow{ErrorKind::kUnsupportedOsType, "OsTypeNotSupported", 400},
    ErrorRow{ErrorKind::kInvalidVolume, "InvalidVolume", 400},
    ErrorRow{ErrorKind::kIsolationRequired, "IsolationRequired", 400},
    ErrorRow{ErrorKind::kUndefinedVolume, "VolumeMountNameNotFound", 400},
    ErrorRow{ErrorKind::kInvalidEnvironmentVariable, "InvalidEnvironmentVariable", 400},
    ErrorRow{ErrorKind::kInvalidIpAddress, "InvalidIpAddress", 400},
    ErrorRow{ErrorKind::kInvalidTags, "InvalidTags", 400},
    ErrorRow{ErrorKind::kInvalidZones, "InvalidZones", 400},
    ErrorRow{ErrorKind::kInvalidProbe, "InvalidProbe", 400},
    ErrorRow{ErrorKind::kContainerNotFound, "ContainerNotFound", 404},
    ErrorRow{ErrorKind::kContainerGroupNotRunning, "ContainerGroupNotRunning", 409},
    ErrorRow{ErrorKind::kInvalidExecRequest, "InvalidExecRequest", 400},
    ErrorRow{ErrorKind::kInvalidQueryParameter, "InvalidQueryParameter", 400},
    ErrorRow{ErrorKind::kConcurrentUpdate, "Conflict", 409},
    ErrorRow{ErrorKind::kGroupQuotaReached, "ContainerGroupQuotaReached", 409},
    ErrorRow{ErrorKind::kCoresQuotaExceeded, "QuotaExceeded", 409},
    ErrorRow{ErrorKind::kCreateRateLimited, "TooManyRequests", 429},
    ErrorRow{ErrorKind::kStoreUnavailable, "ServiceUnavailable", 503},
    ErrorRow{ErrorKind::kNetworkUnavailable, "NetworkUnavailable", 503},
    ErrorRow{ErrorKind::kInternal, "InternalServerError", 500},
};

const ErrorRow& RowFor(ErrorKind kind) {
  for (const auto& row : kErrorTable) {
    if (row.kind == kind) return row;
  }
  return kErrorTable.back();
}

}  // namespace

int HttpStatusFor(ErrorKind kind) { return RowFor(kind).http_status; }
std::string_view ArmCodeFor(ErrorKind kind) { return RowFor(kind).arm_code; }

namespace {
HttpResponse ErrorEnvelope(int status, const std::string& code, const ApiError& error) {
  containerinstance::v1::ErrorResponse body;
  body.mutable_error()->set_code(code);
  body.mutable_error()->set_message(error.message);
  if (!error.target.empty()) body.mutable_error()->set_target(error.target);
  HttpResponse response;
  response.status = status;
  (void)google::protobuf::util::MessageToJsonString(body, &response.body);
  response.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
  response.headers.emplace_back("x-ms-failure-cause", "gateway");
  if (error.kind == ErrorKind::kMissingToken || error.kind == ErrorKind::kInvalidToken) {
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
  }
  return response;
}
}  // namespace

HttpResponse ErrorResponse(const ApiError& error) {
  return ErrorEnvelope(HttpStatusFor(error.kind), std::string(ArmCodeFor(error.kind)), error);
}

HttpResponse RelayedErrorResponse(int status, const std::string& code, const std::string& message) {
  if (status < 400 || status > 599) status = 400;
  return ErrorEnvelope(status, code, {ErrorKind::kInternal, message, ""});
}

}  // namespace skiff::gateway
