#pragma once

#include <netinet/in.h>

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

// Where a responder inside a network sends the names it does not serve (the host's resolvers,
// so groups resolve the Internet as in ACI). Empty: such names are refused.
struct DnsUpstream {
  std::string address;  // IPv4
  int port = 53;
};
// "1.1.1.1, 10.0.0.2:5353" -> upstreams; invalid entries are skipped.
std::vector<DnsUpstream> ParseUpstreams(const std::string& text);
// The nameservers of a resolv.conf (IPv4 only).
std::vector<DnsUpstream> UpstreamsFromResolvConf(const std::string& path = "/etc/resolv.conf");

// A UDP DNS responder (ldns for the wire format) on one address, answering from the table for
// one domain ("" = the public zone). Runs its own thread until destroyed; queries it forwards
// run on their own short-lived threads (at most 64 at once, each waiting 2 s per upstream).
class DnsResponder {
 public:
  // nullptr and `error` set when the address cannot be bound.
  // `clients`: when set, queries from other addresses are dropped unanswered (a bridge's
  // responder serves its own subnet's groups, never another network's).
  static std::unique_ptr<DnsResponder> Start(const std::string& host, int port, const DnsTable& table,
                                             std::string domain, std::string* error,
                                             std::vector<DnsUpstream> upstreams = {},
                                             std::optional<Ipv4Prefix> clients = std::nullopt);
  ~DnsResponder();
  int port() const { return port_; }

 private:
  DnsResponder(int fd, int port, const DnsTable& table, std::string domain, std::vector<DnsUpstream> upstreams,
               std::optional<Ipv4Prefix> clients);
  void Serve();
  void Forward(std::string query, sockaddr_in from);
  int fd_;
  int port_;
  std::optional<Ipv4Prefix> clients_;
  const DnsTable& table_;
  std::string domain_;
  std::vector<DnsUpstream> upstreams_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> forwarding_{0};
  std::thread thread_;
};

// Pure: the answer packet for a query packet (nullopt: not a query worth answering). With
// `outside` set, a name this table does not serve is reported there instead of refused (the
// caller forwards it).
std::optional<std::string> AnswerDnsQuery(const std::string& query, const DnsTable& table, const std::string& domain,
                                          bool* outside = nullptr);

}  // namespace skiff::network
