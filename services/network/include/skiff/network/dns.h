#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "skiff/network/network_store.h"

namespace skiff::network {

// Who can see a name: the public zone (everyone), or one isolation domain (a virtual network).
struct DnsAnswer {
  enum class Kind { kFound, kNoData, kNxDomain, kRefused } kind = Kind::kRefused;
  std::vector<uint32_t> addresses;
};

// The names the network serves, rebuilt from the claims:
//   <label>.<location>.<zone>              A public address (or private, for a group without one)
//   <group name> and <group name>.<internal domain>, asked from inside a virtual network:
//                                          the private addresses of that network's groups
class DnsTable {
 public:
  DnsTable(std::string zone, std::string internal_domain);
  void Rebuild(const std::vector<std::pair<GroupClaim, SubnetRow>>& claims);
  // `qname` without the trailing dot, any case; `domain` empty for the public listener.
  DnsAnswer Lookup(const std::string& qname, bool type_a, const std::string& domain) const;
  // For the ingress: the group behind an fqdn.
  std::optional<std::pair<GroupClaim, SubnetRow>> FindFqdn(const std::string& fqdn) const;
  size_t size() const;

 private:
  std::string zone_, internal_domain_;
  mutable std::mutex mutex_;
  std::map<std::string, std::pair<GroupClaim, SubnetRow>> public_names_;
  std::map<std::string, std::map<std::string, std::vector<uint32_t>>> internal_;  // domain -> name -> addresses
};

// A UDP DNS responder (ldns for the wire format) on one address, answering from the table for
// one domain ("" = the public zone). Runs its own thread until destroyed.
class DnsResponder {
 public:
  // nullptr and `error` set when the address cannot be bound.
  static std::unique_ptr<DnsResponder> Start(const std::string& host, int port, const DnsTable& table,
                                             std::string domain, std::string* error);
  ~DnsResponder();
  int port() const { return port_; }

 private:
  DnsResponder(int fd, int port, const DnsTable& table, std::string domain);
  void Serve();
  int fd_;
  int port_;
  const DnsTable& table_;
  std::string domain_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// Pure: the answer packet for a query packet (nullopt: not a query worth answering).
std::optional<std::string> AnswerDnsQuery(const std::string& query, const DnsTable& table, const std::string& domain);

}  // namespace skiff::network
