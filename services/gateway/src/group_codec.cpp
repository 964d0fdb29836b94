#include "skiff/gateway/group_codec.h"

#include <google/protobuf/util/json_util.h>

#include "skiff/armjson/arm_json.h"
#include "skiff/containerinstance/v1/container_group.pb.h"

namespace skiff::gateway {
namespace ci = containerinstance::v1;
namespace {

template <typename Message>
std::variant<Message, ApiError> Parse(const std::string& body, const char* what) {
  Message message;
  size_t first = body.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || body[first] != '{') {
    return ApiError{ErrorKind::kMalformedJson, std::string("The request body must be a JSON object (") + what + ").", ""};
  }
  // ARM matches property names case-insensitively and ignores unknown ones.
  std::string error;
  if (!armjson::ParseArmJson(body, &message, &error)) {
    return ApiError{ErrorKind::kMalformedJson, std::string("The request body is not a valid ") + what + ": " + error, ""};
  }
  return message;
}

template <typename Env>
void RedactEnvironment(Env* env) {
  for (auto& var : *env) var.clear_secure_value();
}

}  // namespace

std::variant<ci::ContainerGroup, ApiError> ParseGroupJson(const std::string& body) {
  return Parse<ci::ContainerGroup>(body, "container group");
}

std::variant<ci::ResourceTagsPatch, ApiError> ParseTagsPatchJson(const std::string& body) {
  return Parse<ci::ResourceTagsPatch>(body, "tags update");
}

std::variant<ci::ContainerExecRequest, ApiError> ParseExecRequestJson(const std::string& body) {
  return Parse<ci::ContainerExecRequest>(body, "exec request");
}

double RequestedCores(const containerinstance::v1::ContainerGroup& group) {
  double cores = 0;
  for (const auto& container : group.properties().containers()) {
    cores += container.properties().resources().requests().cpu();
  }
  return cores;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out);
  return out;
}

void RedactSecrets(ci::ContainerGroup& group) {
  auto* props = group.mutable_properties();
  for (auto& container : *props->mutable_containers()) {
    RedactEnvironment(container.mutable_properties()->mutable_environment_variables());
  }
  for (auto& init : *props->mutable_init_containers()) {
    RedactEnvironment(init.mutable_properties()->mutable_environment_variables());
  }
  for (auto& cred : *props->mutable_image_registry_credentials()) cred.clear_password();
  for (auto& volume : *props->mutable_volumes()) {
    // ACI answers a secret volume with its file names only.
    for (auto& [file, content] : *volume.mutable_secret()) content.clear();
    if (volume.has_azure_file()) volume.mutable_azure_file()->clear_storage_account_key();
  }
  if (props->has_diagnostics()) props->mutable_diagnostics()->mutable_log_analytics()->clear_workspace_key();
}

}  // namespace skiff::gateway
