#pragma once

#include <string>

#include "skiff/network/host_network.h"

namespace skiff::network {

// CniRunner over the plugin binaries in `plugin_dir` (containernetworking-plugins).
class ExecCniRunner : public CniRunner {
 public:
  explicit ExecCniRunner(std::string plugin_dir) : plugin_dir_(std::move(plugin_dir)) {}
  Outcome Add(const std::string& conflist, const std::string& container_id, const std::string& netns,
              const std::string& ifname) override;
  Outcome Del(const std::string& conflist, const std::string& prev_result, const std::string& container_id,
              const std::string& netns, const std::string& ifname) override;

 private:
  Outcome Invoke(const std::string& command, const std::string& conflist, const std::string& prev_result,
                 const std::string& container_id, const std::string& netns, const std::string& ifname);
  std::string plugin_dir_;
};

// HostPlumbing with iptables (iptables-restore, atomically) and ip(8). The chains are named
// per installation (`tag`, e.g. from the agent name: SKIFF-ISO-<tag>, SKIFF-HOST-<tag>) and
// drop only traffic coming from its own bridges, so a second installation on the host (a test
// beside the local stack) neither erases nor blocks the first one's rules.
class IptablesPlumbing : public HostPlumbing {
 public:
  // `blocked_destinations`: CIDRs no group may reach through the host (link-local metadata, the
  // control plane's networks), on top of the host's own addresses, which are always closed.
  explicit IptablesPlumbing(const std::string& tag,
                            std::vector<std::string> blocked_destinations = {"169.254.0.0/16"});
  std::optional<std::string> SyncIsolation(const std::vector<HostBridge>& bridges) override;
  std::vector<std::string> ListBridges() override;
  void DeleteBridge(const std::string& name) override;
  bool NamespaceExists(const std::string& path) override;

  // The iptables-restore input for these bridges (pure; tested on its own).
  std::string IsolationRules(const std::vector<HostBridge>& bridges) const;
  const std::string& isolation_chain() const { return isolation_chain_; }

 private:
  std::string isolation_chain_, host_chain_;
  std::vector<std::string> blocked_destinations_;
};

}  // namespace skiff::network
