// skiff: the command line for Skiff, shaped after `az container`.
#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <set>
#include <thread>

#include "skiff/cli/cli.h"
#include "skiff/cli/https_client.h"

namespace {

using namespace skiff::cli;
constexpr const char* kApi = "?api-version=2023-05-01";

int Fail(const std::string& message, int code = 1) {
  std::cerr << "skiff: " << message << "\n";
  return code;
}

// An answer that is not 2xx: its ARM error, exit 1.
bool Failed(const Answer& answer) {
  if (answer.status >= 200 && answer.status < 300) return false;
  std::cerr << "skiff: " << ErrorText(answer) << "\n";
  return true;
}

std::string Pretty(const std::string& json) {
  google::protobuf::Struct parsed;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  std::string out;
  if (!google::protobuf::util::JsonStringToMessage(json, &parsed).ok() ||
      !google::protobuf::util::MessageToJsonString(parsed, &out, options).ok()) {
    return json + "\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"skiff: create and manage Skiff container groups (shaped after `az container`)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options (-o, --url, ...) may come after the command too
  std::map<std::string, std::string> flags;
  app.add_option("--url", flags["url"], "API URL (or SKIFF_URL, or .skiff/env)");
  app.add_option("--token", flags["token"], "API token (or SKIFF_TOKEN)");
  app.add_option("--subscription", flags["subscription"], "subscription id (or SKIFF_SUBSCRIPTION)");
  app.add_option("--ca", flags["ca"], "CA certificate file (or SKIFF_CA)");
  app.add_option("--location", flags["location"], "location for new groups (or SKIFF_LOCATION)");
  std::string output = "table", resource_group, name;
  app.add_option("-o,--output", output, "json or table")->check(CLI::IsMember({"json", "table"}));

  CreateOptions create;
  bool no_wait = false;
  int tail = 0;
  auto* create_cmd = app.add_subcommand("create", "Create (or replace) a container group and wait until it runs");
  auto* show_cmd = app.add_subcommand("show", "Show a container group");
  auto* list_cmd = app.add_subcommand("list", "List container groups");
  auto* delete_cmd = app.add_subcommand("delete", "Delete a container group");
  auto* logs_cmd = app.add_subcommand("logs", "Print a container's log");
  auto* start_cmd = app.add_subcommand("start", "Start a stopped container group");
  auto* stop_cmd = app.add_subcommand("stop", "Stop a container group (billing stops)");
  auto* restart_cmd = app.add_subcommand("restart", "Restart a container group's containers in place");
  auto* export_cmd = app.add_subcommand("export", "Print a group's document (JSON), for create -f");
  auto* usage_cmd = app.add_subcommand("usage", "Usage against quota, and the cost so far");
  auto* exec_cmd = app.add_subcommand("exec", "Run a command in a running container (a terminal when stdin is one)");
  auto* attach_cmd = app.add_subcommand("attach", "Follow a container's output live");
  std::string exec_command = "/bin/sh";
  exec_cmd->add_option("--exec-command", exec_command, "the command (split on spaces)");
  bool follow = false;
  logs_cmd->add_flag("--follow", follow, "keep printing new output (as attach)");
  std::string container;
  for (auto* cmd : {create_cmd, show_cmd, delete_cmd, logs_cmd, start_cmd, stop_cmd, restart_cmd, export_cmd, exec_cmd,
                    attach_cmd}) {
    cmd->add_option("-g,--resource-group", resource_group, "resource group")->required();
    auto* name_option = cmd->add_option("-n,--name", name, "container group name");
    if (cmd != create_cmd) name_option->required();  // create: or the `name` of its -f file
  }
  list_cmd->add_option("-g,--resource-group", resource_group, "resource group (default: the whole subscription)");
  for (auto* cmd : {logs_cmd, exec_cmd, attach_cmd}) {
    cmd->add_option("--container-name", container, "container (default: the group's first)");
  }
  logs_cmd->add_option("--tail", tail, "the last N lines");
  create_cmd->add_option("--image", create.image, "container image");
  create_cmd->add_option("-f,--file", create.file,
                         "a container group document (JSON, or YAML as az container create -f takes); flags override it");
  create_cmd->add_option("--cpu", create.cpu, "cores requested")->check(CLI::PositiveNumber);
  create_cmd->add_option("--memory", create.memory_gb, "memory in GB")->check(CLI::PositiveNumber);
  create_cmd->add_option("--ports", create.ports, "ports to open")->check(CLI::Range(1, 65535));
  create_cmd->add_option("--protocol", create.protocol, "TCP or UDP")->check(CLI::IsMember({"TCP", "UDP"}));
  create_cmd->add_option("--ip-address", create.ip_address, "Public or Private")->check(CLI::IsMember({"Public", "Private"}));
  create_cmd->add_option("--dns-name-label", create.dns_name_label, "DNS name label");
  create_cmd->add_option("--os-type", create.os_type, "Linux");
  create_cmd->add_option("--restart-policy", create.restart_policy, "Always, OnFailure or Never")
      ->check(CLI::IsMember({"Always", "OnFailure", "Never"}));
  create_cmd->add_option("--command-line", create.command_line, "command to run instead of the image's");
  create_cmd->add_option("-e,--environment-variables", create.environment, "NAME=VALUE ...");
  create_cmd->add_option("--secure-environment-variables", create.secure_environment, "NAME=VALUE ... (never shown)");
  create_cmd->add_option("--priority", create.priority, "Regular or Spot")->check(CLI::IsMember({"Regular", "Spot"}));
  create_cmd->add_option("--zone", create.zone, "availability zone");
  create_cmd->add_option("--registry-login-server", create.registry_server, "private registry");
  create_cmd->add_option("--registry-username", create.registry_username, "registry user");
  create_cmd->add_option("--registry-password", create.registry_password, "registry password");
  std::string vnet, subnet;
  create_cmd->add_option("--vnet", vnet, "virtual network (of the resource group) to put the group in");
  create_cmd->add_option("--subnet", subnet, "subnet name in --vnet, or a subnet resource id");
  create_cmd->add_flag("--no-wait", no_wait, "return once the API accepted the group");
  CLI11_PARSE(app, argc, argv);

  std::string missing;
  char cwd[4096];
  auto credentials = ResolveCredentials(
      flags, [](const std::string& key) -> std::optional<std::string> {
        const char* value = std::getenv(key.c_str());
        return value ? std::optional<std::string>(value) : std::nullopt;
      },
      getcwd(cwd, sizeof cwd) ? cwd : "/", &missing);
  if (!credentials) return Fail("no credentials: set " + missing + " (scripts/up writes them to .skiff/env)", 2);

  try {
    std::string path = GroupPath(*credentials, resource_group, name);
    if (create_cmd->parsed()) {
      create.name = name;
      auto subnet_id = SubnetId(*credentials, resource_group, vnet, subnet);
      if (subnet_id.index() == 1) return Fail(std::get<1>(subnet_id));
      create.subnet_id = std::get<0>(subnet_id);
      std::string file_text;
      if (!create.file.empty()) {
        std::ifstream in(create.file);
        if (!in) return Fail("cannot read " + create.file);
        std::stringstream text;
        text << in.rdbuf();
        file_text = text.str();
      }
      auto built = BuildGroup(create, file_text, credentials->location);
      if (auto* error = std::get_if<std::string>(&built)) return Fail(*error);
      if (name.empty()) {
        name = std::get<0>(built).name();
        if (name.empty()) return Fail("-n/--name is required unless the file names the group");
        path = GroupPath(*credentials, resource_group, name);
      }
      std::get<0>(built).clear_name();  // read-only properties of the resource, not of its spec
      std::get<0>(built).clear_id();
      std::get<0>(built).clear_type();
      std::string body;
      (void)google::protobuf::util::MessageToJsonString(std::get<0>(built), &body);
      auto put = Call(*credentials, "PUT", path + kApi, body);
      if (Failed(put)) return 1;
      if (no_wait) {
        std::cout << (output == "json" ? Pretty(put.body) : "accepted: " + name + "\n");
        return 0;
      }
      // Progress: each new group and container event as it happens, until it runs or fails.
      std::set<std::string> seen;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
      while (std::chrono::steady_clock::now() < deadline) {
        auto got = Call(*credentials, "GET", path + kApi);
        if (Failed(got)) return 1;
        auto group = ParseGroup(got.body);
        if (!group) return Fail("the API answered a document that is not a container group");
        if (output == "table") {
          auto show = [&](const std::string& who, const auto& events) {
            for (const auto& event : events) {
              const std::string key = who + event.name() + event.message() + event.first_timestamp();
              if (seen.insert(key).second) std::cerr << "  " << who << event.name() << ": " << event.message() << "\n";
            }
          };
          show("", group->properties().instance_view().events());
          for (const auto& c : group->properties().containers()) show(c.name() + " ", c.properties().instance_view().events());
        }
        const std::string state = group->properties().provisioning_state();
        if (state == "Succeeded" || state == "Failed") {
          std::cout << (output == "json" ? Pretty(got.body) : GroupDetails(*group));
          return state == "Succeeded" ? 0 : 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      return Fail("the group did not finish provisioning within 10 minutes");
    }
    if (show_cmd->parsed() || export_cmd->parsed()) {
      auto got = Call(*credentials, "GET", path + kApi);
      if (Failed(got)) return 1;
      auto group = ParseGroup(got.body);
      if (export_cmd->parsed() || output == "json" || !group) {
        std::cout << Pretty(got.body);
      } else {
        std::cout << GroupDetails(*group);
      }
      return 0;
    }
    if (list_cmd->parsed()) {
      std::string next = (resource_group.empty()
                              ? "/subscriptions/" + credentials->subscription +
                                    "/providers/Microsoft.ContainerInstance/containerGroups"
                              : GroupPath(*credentials, resource_group, "")) + kApi;
      std::vector<skiff::containerinstance::v1::ContainerGroup> groups;
      std::string json = "[";
      while (!next.empty()) {
        auto got = Call(*credentials, "GET", next);
        if (Failed(got)) return 1;
        skiff::containerinstance::v1::ContainerGroupListResult page;
        google::protobuf::util::JsonParseOptions parse;
        parse.ignore_unknown_fields = true;
        if (!google::protobuf::util::JsonStringToMessage(got.body, &page, parse).ok()) {
          return Fail("the API answered a list that does not parse");
        }
        for (const auto& group : page.value()) groups.push_back(group);
        next.clear();
        if (!page.next_link().empty()) next = page.next_link().substr(page.next_link().find("/subscriptions/"));
      }
      if (output == "json") {
        for (size_t i = 0; i < groups.size(); ++i) {
          std::string one;
          (void)google::protobuf::util::MessageToJsonString(groups[i], &one);
          json += (i ? "," : "") + one;
        }
        std::cout << Pretty(json + "]");
      } else {
        std::cout << GroupTable(groups);
      }
      return 0;
    }
    if (delete_cmd->parsed()) {
      auto deleted = Call(*credentials, "DELETE", path + kApi);
      if (Failed(deleted)) return 1;
      std::cout << (deleted.status == 204 ? "nothing to delete: " : "deleted: ") << name << "\n";
      return 0;
    }
    if ((logs_cmd->parsed() || exec_cmd->parsed() || attach_cmd->parsed()) && container.empty()) {
      auto got = Call(*credentials, "GET", path + kApi);
      if (Failed(got)) return 1;
      auto group = ParseGroup(got.body);
      if (!group || group->properties().containers_size() == 0) return Fail("the group has no containers");
      container = group->properties().containers(0).name();
    }
    if (exec_cmd->parsed() || attach_cmd->parsed() || (logs_cmd->parsed() && follow)) {
      const bool exec = exec_cmd->parsed();
      const bool terminal = exec && ::isatty(STDIN_FILENO);
      std::string body = "{}";
      if (exec) {
        skiff::containerinstance::v1::ContainerExecRequest request;
        request.set_command(exec_command);
        if (terminal) {
          winsize size{};
          ::ioctl(STDIN_FILENO, TIOCGWINSZ, &size);
          request.mutable_terminal_size()->set_rows(size.ws_row ? size.ws_row : 24);
          request.mutable_terminal_size()->set_cols(size.ws_col ? size.ws_col : 80);
        }
        body.clear();  // MessageToJsonString appends
        (void)google::protobuf::util::MessageToJsonString(request, &body);
      }
      auto opened = Call(*credentials, "POST", path + "/containers/" + container + (exec ? "/exec" : "/attach") + kApi, body);
      if (Failed(opened)) return 1;
      skiff::containerinstance::v1::ContainerStreamResponse stream;
      google::protobuf::util::JsonParseOptions parse;
      parse.ignore_unknown_fields = true;
      if (!google::protobuf::util::JsonStringToMessage(opened.body, &stream, parse).ok()) {
        return Fail("the API answered a stream that does not parse");
      }
      // A terminal goes raw while the remote one drives it, and comes back however this ends.
      termios saved{};
      const bool raw = terminal && ::tcgetattr(STDIN_FILENO, &saved) == 0;
      if (raw) {
        termios mode = saved;
        ::cfmakeraw(&mode);
        ::tcsetattr(STDIN_FILENO, TCSANOW, &mode);
      }
      int code = 0;
      std::string error;
      try {
        code = JoinStream(*credentials, stream.web_socket_uri(), stream.password(), exec, raw);
      } catch (const std::exception& e) {
        error = e.what();
        code = 1;
      }
      if (raw) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
      std::cout.flush();
      if (!error.empty()) std::cerr << "skiff: " << error << "\n";
      std::_Exit(code);  // the input thread may still sit in read(2): end here, with the command's code
    }
    if (logs_cmd->parsed()) {
      auto logs = Call(*credentials, "GET", path + "/containers/" + container + "/logs" + kApi +
                                                (tail > 0 ? "&tail=" + std::to_string(tail) : ""));
      if (Failed(logs)) return 1;
      google::protobuf::Struct parsed;
      if (google::protobuf::util::JsonStringToMessage(logs.body, &parsed).ok()) {
        std::cout << parsed.fields().at("content").string_value();
      }
      return 0;
    }
    for (auto* cmd : {start_cmd, stop_cmd, restart_cmd}) {
      if (!cmd->parsed()) continue;
      auto answer = Call(*credentials, "POST", path + "/" + cmd->get_name() + kApi);
      if (Failed(answer)) return 1;
      std::cout << cmd->get_name() << ": " << name << "\n";
      return 0;
    }
    if (usage_cmd->parsed()) {
      auto usages = Call(*credentials, "GET", "/subscriptions/" + credentials->subscription +
                                                  "/providers/Microsoft.ContainerInstance/locations/" +
                                                  credentials->location + "/usages" + kApi);
      if (Failed(usages)) return 1;
      auto costs = Call(*credentials, "GET", "/subscriptions/" + credentials->subscription +
                                                 "/providers/Skiff.Billing/costs" + kApi + "&groupBy=subscription");
      if (output == "json") {
        std::cout << Pretty("{\"usages\":" + usages.body + ",\"costs\":" + (costs.status == 200 ? costs.body : "null") + "}");
        return 0;
      }
      google::protobuf::Struct parsed;
      if (google::protobuf::util::JsonStringToMessage(usages.body, &parsed).ok()) {
        for (const auto& item : parsed.fields().at("value").list_value().values()) {
          const auto& f = item.struct_value().fields();
          std::cout << f.at("name").struct_value().fields().at("localizedValue").string_value() << ": "
                    << f.at("currentValue").number_value() << " of "
                    << (f.at("limit").number_value() < 0 ? std::string("unlimited")
                                                         : std::to_string(static_cast<long>(f.at("limit").number_value())))
                    << "\n";
        }
      }
      google::protobuf::Struct cost;
      if (costs.status == 200 && google::protobuf::util::JsonStringToMessage(costs.body, &cost).ok()) {
        std::cout << "Cost (last 30 days): " << cost.fields().at("totalCost").number_value() << " "
                  << cost.fields().at("currency").string_value() << "\n";
      } else {
        std::cout << "Cost: " << ErrorText(costs) << "\n";
      }
      return 0;
    }
  } catch (const Unreachable& e) {
    return Fail(e.what(), 3);
  }
  return 0;
}
