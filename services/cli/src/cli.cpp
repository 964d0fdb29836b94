#include "skiff/cli/cli.h"

#include "skiff/armjson/arm_json.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace skiff::cli {

namespace ci = containerinstance::v1;

namespace {

std::map<std::string, std::string> ReadEnvFile(const std::string& path) {
  std::map<std::string, std::string> values;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos || line[0] == '#') continue;
    values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return values;
}

std::optional<std::pair<std::string, std::string>> SplitPair(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) return std::nullopt;
  return std::make_pair(text.substr(0, eq), text.substr(eq + 1));
}

std::string Pad(const std::string& text, size_t width) {
  return text.size() >= width ? text + " " : text + std::string(width - text.size(), ' ');
}

}  // namespace

std::optional<Credentials> ResolveCredentials(const std::map<std::string, std::string>& flags,
                                              const std::function<std::optional<std::string>(const std::string&)>& env,
                                              const std::string& cwd, std::string* missing) {
  std::map<std::string, std::string> file;
  for (std::string dir = cwd; !dir.empty();) {
    std::ifstream probe(dir + "/.skiff/env");
    if (probe) {
      file = ReadEnvFile(dir + "/.skiff/env");
      break;
    }
    auto slash = dir.rfind('/');
    dir = slash == 0 || slash == std::string::npos ? (dir == "/" ? "" : "/") : dir.substr(0, slash);
  }
  auto pick = [&](const std::string& flag, const std::string& variable) -> std::string {
    if (auto it = flags.find(flag); it != flags.end() && !it->second.empty()) return it->second;
    if (auto value = env(variable); value && !value->empty()) return *value;
    if (auto it = file.find(variable); it != file.end()) return it->second;
    return "";
  };
  Credentials credentials;
  credentials.url = pick("url", "SKIFF_URL");
  credentials.token = pick("token", "SKIFF_TOKEN");
  credentials.subscription = pick("subscription", "SKIFF_SUBSCRIPTION");
  credentials.ca_file = pick("ca", "SKIFF_CA");
  if (auto location = pick("location", "SKIFF_LOCATION"); !location.empty()) credentials.location = location;
  std::string absent;
  for (const auto& [value, name] : {std::pair{credentials.url, "--url/SKIFF_URL"}, {credentials.token, "--token/SKIFF_TOKEN"},
                                    {credentials.subscription, "--subscription/SKIFF_SUBSCRIPTION"}}) {
    if (value.empty()) absent += (absent.empty() ? "" : ", ") + std::string(name);
  }
  if (!absent.empty()) {
    if (missing) *missing = absent;
    return std::nullopt;
  }
  while (!credentials.url.empty() && credentials.url.back() == '/') credentials.url.pop_back();
  return credentials;
}

std::variant<ci::ContainerGroup, std::string> BuildGroup(const CreateOptions& options, const std::string& file_text,
                                                         const std::string& location) {
  ci::ContainerGroup group;
  if (!file_text.empty()) {
    const size_t first = file_text.find_first_not_of(" \t\r\n");
    std::string json = file_text, error;
    if (first == std::string::npos || file_text[first] != '{') {
      auto converted = YamlToJson(file_text, &error);
      if (!converted) return "the file is neither JSON nor YAML: " + error;
      json = *converted;
    }
    if (!armjson::ParseArmJson(json, &group, &error)) return "the file is not a container group: " + error;
  } else if (options.image.empty()) {
    return std::string("--image is required (or give the whole group with -f FILE)");
  }
  if (group.location().empty()) group.set_location(location);
  auto* properties = group.mutable_properties();
  if (!options.image.empty()) {
    properties->clear_containers();
    auto* container = properties->add_containers();
    container->set_name(options.name.empty() ? group.name() : options.name);
    auto* props = container->mutable_properties();
    props->set_image(options.image);
    props->mutable_resources()->mutable_requests()->set_cpu(options.cpu);
    props->mutable_resources()->mutable_requests()->set_memory_in_gb(options.memory_gb);
    for (int port : options.ports) {
      auto* p = props->add_ports();
      p->set_port(port);
      p->set_protocol(options.protocol);
    }
    if (!options.command_line.empty()) {
      // As az: split on spaces; quote nothing (use -f for arguments with spaces).
      std::istringstream words(options.command_line);
      for (std::string word; words >> word;) props->add_command(word);
    }
    for (const auto& [list, secure] : {std::pair{&options.environment, false}, {&options.secure_environment, true}}) {
      for (const auto& item : *list) {
        auto pair = SplitPair(item);
        if (!pair) return "environment variables are NAME=VALUE, got '" + item + "'";
        auto* variable = props->add_environment_variables();
        variable->set_name(pair->first);
        if (secure) variable->set_secure_value(pair->second);
        else variable->set_value(pair->second);
      }
    }
  }
  if (properties->os_type().empty() || !options.image.empty()) properties->set_os_type(options.os_type);
  if (!options.image.empty() || properties->restart_policy().empty()) properties->set_restart_policy(options.restart_policy);
  if (!options.priority.empty()) properties->set_priority(options.priority);
  if (!options.zone.empty()) {
    group.clear_zones();
    group.add_zones(options.zone);
  }
  if (!options.ip_address.empty() || !options.dns_name_label.empty()) {
    auto* ip = properties->mutable_ip_address();
    ip->set_type(options.ip_address.empty() ? "Public" : options.ip_address);
    if (!options.dns_name_label.empty()) ip->set_dns_name_label(options.dns_name_label);
    for (int port : options.ports) {
      auto* p = ip->add_ports();
      p->set_port(port);
      p->set_protocol(options.protocol);
    }
  }
  if (!options.subnet_id.empty()) {
    properties->clear_subnet_ids();
    properties->add_subnet_ids()->set_id(options.subnet_id);
    // In a virtual network a group's address is private unless asked otherwise (as az does).
    if (options.ip_address.empty() && properties->has_ip_address()) properties->mutable_ip_address()->set_type("Private");
  }
  if (!options.registry_server.empty()) {
    auto* credential = properties->add_image_registry_credentials();
    credential->set_server(options.registry_server);
    credential->set_username(options.registry_username);
    credential->set_password(options.registry_password);
  }
  return group;
}

std::string GroupPath(const Credentials& credentials, const std::string& resource_group, const std::string& name) {
  return "/subscriptions/" + credentials.subscription + "/resourceGroups/" + resource_group +
         "/providers/Microsoft.ContainerInstance/containerGroups" + (name.empty() ? "" : "/" + name);
}

std::string ErrorText(const Answer& answer) {
  google::protobuf::Struct parsed;
  if (google::protobuf::util::JsonStringToMessage(answer.body, &parsed).ok()) {
    auto error = parsed.fields().find("error");
    if (error != parsed.fields().end() && error->second.has_struct_value()) {
      const auto& fields = error->second.struct_value().fields();
      auto code = fields.find("code");
      auto message = fields.find("message");
      if (code != fields.end() && message != fields.end()) {
        return code->second.string_value() + ": " + message->second.string_value();
      }
    }
  }
  return "HTTP " + std::to_string(answer.status) + (answer.body.empty() ? "" : ": " + answer.body.substr(0, 300));
}

std::optional<ci::ContainerGroup> ParseGroup(const std::string& json) {
  ci::ContainerGroup group;
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &group, parse).ok()) return std::nullopt;
  return group;
}

std::string GroupTable(const std::vector<ci::ContainerGroup>& groups) {
  std::string out = Pad("NAME", 24) + Pad("RESOURCE GROUP", 18) + Pad("STATUS", 11) + Pad("STATE", 10) +
                    Pad("IMAGE", 40) + "CPU/MEMORY\n";
  for (const auto& group : groups) {
    const auto& properties = group.properties();
    std::string image;
    double cpu = 0, memory = 0;
    for (const auto& container : properties.containers()) {
      if (image.empty()) image = container.properties().image();
      cpu += container.properties().resources().requests().cpu();
      memory += container.properties().resources().requests().memory_in_gb();
    }
    // The resource group is the fifth segment of the id.
    std::string resource_group;
    const std::string& id = group.id();
    if (auto start = id.find("/resourceGroups/"); start != std::string::npos) {
      start += 16;
      resource_group = id.substr(start, id.find('/', start) - start);
    }
    char sizes[64];
    std::snprintf(sizes, sizeof sizes, "%g core/%g gb", cpu, memory);
    out += Pad(group.name(), 24) + Pad(resource_group, 18) + Pad(properties.provisioning_state(), 11) +
           Pad(properties.instance_view().state().empty() ? "-" : properties.instance_view().state(), 10) +
           Pad(image, 40) + sizes + "\n";
  }
  return out;
}

std::string GroupDetails(const ci::ContainerGroup& group) {
  const auto& properties = group.properties();
  std::string out = GroupTable({group}) + "\n";
  for (const auto& container : properties.containers()) {
    const auto& view = container.properties().instance_view();
    out += "container " + container.name() + ": " +
           (view.current_state().state().empty() ? "-" : view.current_state().state()) +
           (view.current_state().detail_status().empty() ? "" : " (" + view.current_state().detail_status() + ")") +
           ", restarts " + std::to_string(view.restart_count()) + "\n";
  }
  if (properties.instance_view().events_size() > 0) out += "events:\n";
  for (const auto& event : properties.instance_view().events()) {
    out += "  " + event.last_timestamp() + "  " + Pad(event.name(), 12) + event.message() + "\n";
  }
  return out;
}

std::variant<std::string, std::string> SubnetId(const Credentials& credentials, const std::string& resource_group,
                                                const std::string& vnet, const std::string& subnet) {
  using Result = std::variant<std::string, std::string>;
  if (subnet.empty()) {
    if (vnet.empty()) return Result(std::in_place_index<0>, "");
    return Result(std::in_place_index<1>, "--vnet needs --subnet");
  }
  if (subnet.rfind("/subscriptions/", 0) == 0) return Result(std::in_place_index<0>, subnet);
  if (vnet.empty()) return Result(std::in_place_index<1>, "--subnet NAME needs --vnet (or give the subnet's resource id)");
  return Result(std::in_place_index<0>, "/subscriptions/" + credentials.subscription + "/resourceGroups/" + resource_group +
                                            "/providers/Microsoft.Network/virtualNetworks/" + vnet + "/subnets/" + subnet);
}

std::string ResizeMessage(int rows, int cols) {
  return "\x1b[8;" + std::to_string(rows) + ";" + std::to_string(cols) + "t";
}

}  // namespace skiff::cli
