#pragma once

// The `skiff` CLI's logic, shaped after `az container`: credentials, the group document a
// `create` builds from flags, the API path of each command, and how answers and errors print.
// No sockets here (ApiClient is the port); main.cpp wires CLI11 and the HTTPS client.
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "skiff/containerinstance/v1/container_group.pb.h"

namespace skiff::cli {

struct Credentials {
  std::string url;            // https://127.0.0.1:8443
  std::string token;
  std::string subscription;
  std::string ca_file;        // empty: the system's CAs
  std::string location = "local";
};

// Flags first, then SKIFF_* environment variables, then the nearest .skiff/env walking up from
// `cwd`. nullopt with `missing` naming what is absent.
std::optional<Credentials> ResolveCredentials(const std::map<std::string, std::string>& flags,
                                              const std::function<std::optional<std::string>(const std::string&)>& env,
                                              const std::string& cwd, std::string* missing);

struct CreateOptions {
  std::string name;
  std::string file;                               // -f: a JSON or YAML group document (flags then override)
  std::string image;
  double cpu = 1;
  double memory_gb = 1.5;
  std::vector<int> ports;
  std::string protocol = "TCP";
  std::string ip_address;                         // Public | Private | empty
  std::string dns_name_label;
  std::string os_type = "Linux";
  std::string restart_policy = "Always";
  std::string command_line;
  std::vector<std::string> environment;           // K=V
  std::vector<std::string> secure_environment;    // K=V
  std::string priority;                           // Regular | Spot
  std::string zone;
  std::string registry_server, registry_username, registry_password;
  std::string subnet_id;                          // --vnet/--subnet: the subnet's full resource id
};

// --subnet as az takes it: a full resource id, or a subnet name with --vnet (a network of
// `resource_group` in the subscription). An error message when neither works.
std::variant<std::string, std::string> SubnetId(const Credentials& credentials, const std::string& resource_group,
                                                const std::string& vnet, const std::string& subnet);

// The YAML of `az container create -f` as JSON; nullopt with `error` when it does not parse.
std::optional<std::string> YamlToJson(const std::string& text, std::string* error);

// The group document for PUT, or an error message for the user. `file_text` is JSON (starts
// with '{') or YAML; property names match case-insensitively, as ARM's do.
std::variant<containerinstance::v1::ContainerGroup, std::string> BuildGroup(const CreateOptions& options,
                                                                           const std::string& file_text,
                                                                           const std::string& location);

std::string GroupPath(const Credentials& credentials, const std::string& resource_group, const std::string& name);

struct Answer {
  int status = 0;
  std::string body;
};

// The message for a failed answer: ARM's {"error":{"code","message"}} when present.
std::string ErrorText(const Answer& answer);

std::optional<containerinstance::v1::ContainerGroup> ParseGroup(const std::string& json);

// The exec stream's resize message: xterm's "set window size" sequence ESC [ 8 ; rows ; cols t,
// which the gateway reads as a resize of the command's terminal.
std::string ResizeMessage(int rows, int cols);
std::string GroupTable(const std::vector<containerinstance::v1::ContainerGroup>& groups);
std::string GroupDetails(const containerinstance::v1::ContainerGroup& group);

}  // namespace skiff::cli
