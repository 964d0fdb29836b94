#include "skiff/network/host_adapters.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <sstream>

#include "skiff/network/cidr.h"
#include "skiff/process/process.h"

namespace skiff::network {

namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

std::optional<Struct> ParseObject(const std::string& json) {
  Struct object;
  if (!google::protobuf::util::JsonStringToMessage(json, &object).ok()) return std::nullopt;
  return object;
}

std::string Dump(const Struct& object) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(object, &json);
  return json;
}

// A plugin's error is JSON ({"code":…,"msg":…,"details":…}) on stdout; say it plainly.
std::string PluginError(const std::string& type, const process::ProcessResult& run) {
  std::string message = type + " exited " + std::to_string(run.exit_code);
  if (auto error = ParseObject(run.out)) {
    const auto& fields = error->fields();
    if (auto msg = fields.find("msg"); msg != fields.end()) message += ": " + msg->second.string_value();
    if (auto details = fields.find("details"); details != fields.end() && !details->second.string_value().empty()) {
      message += " (" + details->second.string_value() + ")";
    }
  } else if (!run.out.empty() || !run.err.empty()) {
    message += ": " + run.out + run.err;
  }
  return message;
}

}  // namespace

CniRunner::Outcome ExecCniRunner::Invoke(const std::string& command, const std::string& conflist,
                                         const std::string& prev_result, const std::string& container_id,
                                         const std::string& netns, const std::string& ifname) {
  Outcome outcome;
  auto list = ParseObject(conflist);
  if (!list) {
    outcome.error = "the configuration list is not JSON";
    return outcome;
  }
  const auto& fields = list->fields();
  const std::string version = fields.count("cniVersion") ? fields.at("cniVersion").string_value() : "1.0.0";
  const std::string name = fields.count("name") ? fields.at("name").string_value() : "skiff";
  std::vector<Struct> plugins;
  if (auto it = fields.find("plugins"); it != fields.end()) {
    for (const auto& plugin : it->second.list_value().values()) plugins.push_back(plugin.struct_value());
  }
  if (command == "DEL") std::reverse(plugins.begin(), plugins.end());
  std::optional<Struct> previous;
  if (!prev_result.empty()) previous = ParseObject(prev_result);
  std::string first_error;
  for (auto& plugin : plugins) {
    const std::string type = plugin.fields().count("type") ? plugin.fields().at("type").string_value() : "";
    if (type.empty() || type.find('/') != std::string::npos) {
      outcome.error = "a plugin without a valid type";
      return outcome;
    }
    Value text;
    text.set_string_value(version);
    (*plugin.mutable_fields())["cniVersion"] = text;
    text.set_string_value(name);
    (*plugin.mutable_fields())["name"] = text;
    if (previous) *(*plugin.mutable_fields())["prevResult"].mutable_struct_value() = *previous;
    auto run = process::RunProcess({plugin_dir_ + "/" + type},
                                   {Dump(plugin),
                                    {{"CNI_COMMAND", command},
                                     {"CNI_CONTAINERID", container_id},
                                     {"CNI_NETNS", netns},
                                     {"CNI_IFNAME", ifname},
                                     {"CNI_PATH", plugin_dir_}}});
    if (run.exit_code != 0) {
      // DEL goes on through every plugin, so one failure does not leave the others' state.
      if (command == "DEL") {
        if (first_error.empty()) first_error = PluginError(type, run);
        continue;
      }
      outcome.error = PluginError(type, run);
      return outcome;
    }
    if (command == "ADD") {
      auto result = ParseObject(run.out);
      if (!result) {
        outcome.error = type + " returned no result";
        return outcome;
      }
      previous = result;
    }
  }
  outcome.ok = first_error.empty();
  outcome.error = first_error;
  if (previous && command == "ADD") outcome.result = Dump(*previous);
  return outcome;
}

CniRunner::Outcome ExecCniRunner::Add(const std::string& conflist, const std::string& container_id,
                                      const std::string& netns, const std::string& ifname) {
  return Invoke("ADD", conflist, "", container_id, netns, ifname);
}

CniRunner::Outcome ExecCniRunner::Del(const std::string& conflist, const std::string& prev_result,
                                      const std::string& container_id, const std::string& netns,
                                      const std::string& ifname) {
  return Invoke("DEL", conflist, prev_result, container_id, netns, ifname);
}

IptablesPlumbing::IptablesPlumbing(const std::string& tag, std::vector<std::string> blocked_destinations)
    : blocked_destinations_(std::move(blocked_destinations)) {
  std::string clean;
  for (char c : tag) {
    if (std::isalnum(static_cast<unsigned char>(c))) clean += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  clean = clean.substr(0, 12);  // chain names stay within iptables' 28 characters
  isolation_chain_ = "SKIFF-ISO-" + clean;
  host_chain_ = "SKIFF-HOST-" + clean;
}

std::string IptablesPlumbing::IsolationRules(const std::vector<HostBridge>& bridges) const {
  const std::string& iso = isolation_chain_;
  std::ostringstream rules;
  rules << "*filter\n:" << iso << " - [0:0]\n:" << host_chain_ << " - [0:0]\n";
  // Replies, and traffic a published port forwarded (DNAT), pass; so does traffic between the
  // bridges of one virtual network. Every other packet from our bridges to a bridge is dropped.
  rules << "-A " << iso << " -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j RETURN\n";
  for (const auto& from : bridges) {
    for (const auto& to : bridges) {
      if (from.domain == to.domain) rules << "-A " << iso << " -i " << from.name << " -o " << to.name << " -j RETURN\n";
    }
  }
  for (const auto& from : bridges) rules << "-A " << iso << " -i " << from.name << " -o skb+ -j DROP\n";
  // Nor may they reach link-local services (cloud metadata) or the operator's control-plane
  // networks through the host's routes.
  for (const auto& from : bridges) {
    for (const auto& blocked : blocked_destinations_) {
      rules << "-A " << iso << " -i " << from.name << " -d " << blocked << " -j DROP\n";
    }
  }
  // Groups may ask their own bridge's DNS responder (at its gateway address, from its subnet)
  // and get replies; nothing else on the host is theirs, not another bridge's responder either.
  rules << "-A " << host_chain_ << " -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n";
  for (const auto& bridge : bridges) {
    if (bridge.gateway == 0) continue;
    for (const char* protocol : {"udp", "tcp"}) {
      rules << "-A " << host_chain_ << " -i " << bridge.name << " -d " << FormatIpv4(bridge.gateway) << "/32 -p "
            << protocol << " --dport 53 -j RETURN\n";
    }
  }
  // Dropped bridge by bridge, not with a final DROP: another installation on this host (or one
  // whose chain was left behind) owns other skb bridges and decides for them in its own chain.
  for (const auto& bridge : bridges) rules << "-A " << host_chain_ << " -i " << bridge.name << " -j DROP\n";
  rules << "COMMIT\n";
  return rules.str();
}

std::optional<std::string> IptablesPlumbing::SyncIsolation(const std::vector<HostBridge>& bridges) {
  // One restore replaces both chains at once: there is no moment without isolation.
  auto restore = process::RunProcess({"iptables-restore", "--noflush"}, {IsolationRules(bridges), {}});
  if (restore.exit_code != 0) return "iptables-restore: " + restore.err;
  // The jump to isolation must come before CNI's own FORWARD rules (they accept by address):
  // ahead of CNI-FORWARD, wherever another installation's jump sits.
  auto forward = process::RunProcess({"iptables", "-S", "FORWARD"});
  std::istringstream lines(forward.out);
  std::string line;
  const std::string jump = "-A FORWARD -j " + isolation_chain_;
  int ours = 0;
  bool before_cni = true, ok = false;
  while (std::getline(lines, line)) {
    if (line.rfind("-A FORWARD", 0) != 0) continue;
    if (line == jump) {
      ++ours;
      ok = before_cni;
    } else if (line.find("SKIFF-ISO-") == std::string::npos) {
      before_cni = false;  // anything not an isolation jump: ours must come before it
    }
  }
  if (ours != 1 || !ok) {
    while (process::RunProcess({"iptables", "-D", "FORWARD", "-j", isolation_chain_}).exit_code == 0) {
    }
    auto insert = process::RunProcess({"iptables", "-I", "FORWARD", "1", "-j", isolation_chain_});
    if (insert.exit_code != 0) return "iptables -I FORWARD: " + insert.err;
  }
  if (process::RunProcess({"iptables", "-C", "INPUT", "-i", "skb+", "-j", host_chain_}).exit_code != 0) {
    auto insert = process::RunProcess({"iptables", "-I", "INPUT", "1", "-i", "skb+", "-j", host_chain_});
    if (insert.exit_code != 0) return "iptables -I INPUT: " + insert.err;
  }
  return std::nullopt;
}

std::vector<std::string> IptablesPlumbing::ListBridges() {
  std::vector<std::string> names;
  auto run = process::RunProcess({"ip", "-o", "link", "show", "type", "bridge"});
  std::istringstream lines(run.out);
  std::string line;
  while (std::getline(lines, line)) {
    // "7: skb0123456789ab: <BROADCAST,…"
    auto colon = line.find(": ");
    if (colon == std::string::npos) continue;
    auto end = line.find(':', colon + 2);
    std::string name = line.substr(colon + 2, end - colon - 2);
    if (name.rfind("skb", 0) == 0 && name.size() == 15) names.push_back(name);
  }
  return names;
}

void IptablesPlumbing::DeleteBridge(const std::string& name) { process::RunProcess({"ip", "link", "del", name}); }

bool IptablesPlumbing::NamespaceExists(const std::string& path) {
  struct stat st{};
  return !path.empty() && ::stat(path.c_str(), &st) == 0;
}

}  // namespace skiff::network
