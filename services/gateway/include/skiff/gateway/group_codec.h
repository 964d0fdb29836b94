#pragma once

#include <string>
#include <variant>

#include "skiff/gateway/api_error.h"

namespace google::protobuf {
class Message;
}
namespace skiff::containerinstance::v1 {
class ContainerGroup;
class ResourceTagsPatch;
class ContainerExecRequest;
}  // namespace skiff::containerinstance::v1

namespace skiff::gateway {

// JSON <-> Protobuf through protobuf's own JSON mapping (json_name carries ACI's spelling).
// Unknown fields are ignored, as ARM resource providers do for fields of newer api-versions.
std::variant<containerinstance::v1::ContainerGroup, ApiError> ParseGroupJson(const std::string& body);
std::variant<containerinstance::v1::ResourceTagsPatch, ApiError> ParseTagsPatchJson(const std::string& body);
std::variant<containerinstance::v1::ContainerExecRequest, ApiError> ParseExecRequestJson(const std::string& body);
std::string ToJson(const google::protobuf::Message& message);
// Requested cpu summed over the group's containers: what the cores quota counts (the store's
// generated `cores` column computes the same from the stored JSON).
double RequestedCores(const containerinstance::v1::ContainerGroup& group);

// Removes every secret, for GET and list answers. Names stay; values go.
void RedactSecrets(containerinstance::v1::ContainerGroup& group);

}  // namespace skiff::gateway
