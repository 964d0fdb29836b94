#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "skiff/network/network_store.h"
#include "skiff/network/registry.h"
#include "skiff/network/v1/network.pb.h"

namespace skiff::network {

// Runs a CNI configuration list's plugins (ADD in order, DEL in reverse), as libcni does.
class CniRunner {
 public:
  struct Outcome {
    bool ok = false;
    std::string result;  // ADD: the last plugin's result JSON
    std::string error;
  };
  virtual ~CniRunner() = default;
  virtual Outcome Add(const std::string& conflist, const std::string& container_id, const std::string& netns,
                      const std::string& ifname) = 0;
  virtual Outcome Del(const std::string& conflist, const std::string& prev_result, const std::string& container_id,
                      const std::string& netns, const std::string& ifname) = 0;
};

// A bridge on this host and the isolation domain (virtual network) it belongs to.
struct HostBridge {
  std::string name;
  std::string domain;
  uint32_t gateway = 0;
  Ipv4Prefix subnet;  // the groups' addresses behind it (its DNS responder answers only these)
};

// The host objects CNI does not manage: isolation rules between bridges, stray bridges.
class HostPlumbing {
 public:
  virtual ~HostPlumbing() = default;
  // Makes the isolation rules exactly these: bridges of one domain reach each other, others not.
  virtual std::optional<std::string> SyncIsolation(const std::vector<HostBridge>& bridges) = 0;
  virtual std::vector<std::string> ListBridges() = 0;  // skb* links on the host
  virtual void DeleteBridge(const std::string& name) = 0;
  virtual bool NamespaceExists(const std::string& path) = 0;
};

struct HostNetworkOptions {
  std::string agent;                // this host's name in skiff.network.<agent>.*
  bool masquerade = true;           // outbound traffic leaves with the host's address (ACI's egress)
  bool in_network_dns = true;       // groups use the bridge's DNS responder by default
  std::string internal_domain = "skiff.internal";
  std::string cni_ifname = "eth0";
};

// The network on one host: joins group namespaces to their subnet's bridge with CNI, keeps
// the isolation rules true, and after a crash removes whatever its records say was left.
class HostNetwork {
 public:
  HostNetwork(NetworkStore& store, CniRunner& cni, HostPlumbing& plumbing, HostNetworkOptions options);

  v1::AttachReply Attach(const v1::AttachRequest& request);
  v1::DetachReply Detach(const v1::DetachRequest& request);
  struct ReconcileStats {
    int attachments_removed = 0;
    int bridges_removed = 0;
  };
  // Undoes attachments whose namespace is gone or whose ADD never finished, removes bridges no
  // attachment uses, and rewrites the isolation rules.
  ReconcileStats Reconcile();
  // The bridges this host has now (for the DNS responders on their gateways).
  std::vector<HostBridge> Bridges();

  // The CNI configuration list for a claim in a subnet (pure; tested on its own).
  static std::string ConfList(const SubnetRow& subnet, const GroupClaim& claim, bool masquerade);

 private:
  std::optional<std::string> Undo(const Attachment& attachment);
  // The bridges in use and their user counts, from the records (once, and at every reconcile).
  void LoadBridgesLocked();
  void AddUserLocked(const Attachment& attachment, const HostBridge& bridge);
  void DropUserLocked(const Attachment& attachment);
  // Rewrites the isolation rules when the set of bridges changed since the last time (or always).
  std::optional<std::string> SyncLocked(bool force = false);
  std::set<std::string> KnownBridges();

  NetworkStore& store_;
  CniRunner& cni_;
  HostPlumbing& plumbing_;
  HostNetworkOptions options_;
  std::mutex mutex_;  // one host change at a time: CNI plugins and the rules are host-global
  bool loaded_ = false;
  std::map<std::string, HostBridge> bridges_;  // in use on this host
  std::map<std::string, int> bridge_users_;
  std::vector<HostBridge> synced_;             // what the rules were last written for
  bool synced_once_ = false;
};

}  // namespace skiff::network
