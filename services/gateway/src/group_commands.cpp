// POST {group}/stop | start | restart: sent to the node that runs the group (as the read model
// last heard), fenced by the copy's placement generation.
#include "skiff/gateway/group_api.h"

namespace skiff::gateway {

HttpResponse GroupApi::GroupCommand(const HttpRequest& request, const Route& route) {
  GroupKey key{route.subscription_id, route.resource_group, route.name};
  auto record = store_.Find(key);
  if (!record) {
    return ErrorResponse({ErrorKind::kResourceNotFound,
                          "The Resource 'Microsoft.ContainerInstance/containerGroups/" + route.name +
                              "' under resource group '" + route.resource_group + "' was not found.",
                          ""});
  }
  if (nodes_ == nullptr || !record->runtime || record->runtime->node_id.empty()) {
    return ErrorResponse({ErrorKind::kContainerGroupNotRunning,
                          "The container group '" + route.name + "' is not on a node yet; retry once it is placed.",
                          ""});
  }
  node::v1::GroupCommandRequest command;
  auto* ref = command.mutable_group();
  ref->set_subscription_id(record->key.subscription_id);
  ref->set_resource_group(record->key.resource_group);
  ref->set_name(record->key.name);
  ref->set_group_id(record->group_id);
  ref->set_generation(record->generation);
  command.set_causation_id(request.Header("x-ms-client-request-id"));
  command.set_placement_generation(record->runtime->placement_generation);
  auto reply = nodes_->GroupCommand(record->runtime->node_id, route.command, command);
  if (!reply) {
    return ErrorResponse({ErrorKind::kStoreUnavailable,
                          "The node running the container group did not answer; retry later.", ""});
  }
  if (!reply->ok()) {
    return ErrorResponse({ErrorKind::kContainerGroupNotRunning,
                          "Could not " + route.command + " the container group: " + reply->error_message(), ""});
  }
  HttpResponse response;
  response.status = 204;  // done on the node; the group's state follows in instanceView
  return response;
}

}  // namespace skiff::gateway
