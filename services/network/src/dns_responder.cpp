#include "skiff/network/dns.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

namespace skiff::network {

namespace {

// ldns objects freed on every path.
struct PacketFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using Packet = std::unique_ptr<ldns_pkt, PacketFree>;

}  // namespace

std::optional<std::string> AnswerDnsQuery(const std::string& wire, const DnsTable& table, const std::string& domain,
                                          bool* outside) {
  ldns_pkt* parsed = nullptr;
  if (ldns_wire2pkt(&parsed, reinterpret_cast<const uint8_t*>(wire.data()), wire.size()) != LDNS_STATUS_OK) {
    return std::nullopt;  // not DNS: no answer at all
  }
  Packet query(parsed);
  if (ldns_pkt_qr(query.get())) return std::nullopt;  // a response, not a query
  Packet answer(ldns_pkt_new());
  ldns_pkt_set_id(answer.get(), ldns_pkt_id(query.get()));
  ldns_pkt_set_qr(answer.get(), true);
  ldns_pkt_set_rd(answer.get(), ldns_pkt_rd(query.get()));
  ldns_pkt_set_opcode(answer.get(), ldns_pkt_get_opcode(query.get()));
  ldns_rr_list* questions = ldns_pkt_question(query.get());
  if (ldns_pkt_get_opcode(query.get()) != LDNS_PACKET_QUERY || ldns_rr_list_rr_count(questions) != 1) {
    ldns_pkt_set_rcode(answer.get(), LDNS_RCODE_NOTIMPL);
  } else {
    ldns_rr* question = ldns_rr_list_rr(questions, 0);
    ldns_pkt_push_rr(answer.get(), LDNS_SECTION_QUESTION, ldns_rr_clone(question));
    char* owner_text = ldns_rdf2str(ldns_rr_owner(question));
    std::string qname = owner_text ? owner_text : "";
    free(owner_text);
    if (!qname.empty() && qname.back() == '.') qname.pop_back();
    const bool type_a = ldns_rr_get_type(question) == LDNS_RR_TYPE_A;
    const bool class_in = ldns_rr_get_class(question) == LDNS_RR_CLASS_IN;
    DnsAnswer result = class_in ? table.Lookup(qname, type_a, domain) : DnsAnswer{};
    if (result.kind == DnsAnswer::Kind::kRefused && outside != nullptr && !domain.empty()) {
      *outside = true;
      return std::nullopt;
    }
    switch (result.kind) {
      case DnsAnswer::Kind::kFound:
        ldns_pkt_set_aa(answer.get(), true);
        for (uint32_t address : result.addresses) {
          ldns_rr* rr = ldns_rr_new();
          ldns_rr_set_owner(rr, ldns_rdf_clone(ldns_rr_owner(question)));
          ldns_rr_set_type(rr, LDNS_RR_TYPE_A);
          ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
          ldns_rr_set_ttl(rr, 5);  // short: a deleted group's name goes away quickly
          uint32_t network_order = htonl(address);
          ldns_rr_push_rdf(rr, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_A, 4, &network_order));
          ldns_pkt_push_rr(answer.get(), LDNS_SECTION_ANSWER, rr);
        }
        break;
      case DnsAnswer::Kind::kNoData:
        ldns_pkt_set_aa(answer.get(), true);
        break;
      case DnsAnswer::Kind::kNxDomain:
        ldns_pkt_set_aa(answer.get(), true);
        ldns_pkt_set_rcode(answer.get(), LDNS_RCODE_NXDOMAIN);
        break;
      case DnsAnswer::Kind::kRefused:
        ldns_pkt_set_rcode(answer.get(), LDNS_RCODE_REFUSED);
        break;
    }
  }
  uint8_t* out = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&out, answer.get(), &size) != LDNS_STATUS_OK) return std::nullopt;
  std::string bytes(reinterpret_cast<char*>(out), size);
  free(out);
  return bytes;
}

std::vector<DnsUpstream> ParseUpstreams(const std::string& text) {
  std::vector<DnsUpstream> upstreams;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    DnsUpstream upstream;
    auto colon = item.find(':');
    upstream.address = item.substr(0, colon);
    if (colon != std::string::npos) {
      try {
        upstream.port = std::stoi(item.substr(colon + 1));
      } catch (const std::exception&) {
        continue;
      }
    }
    in_addr parsed{};
    if (::inet_pton(AF_INET, upstream.address.c_str(), &parsed) != 1 || upstream.port <= 0 || upstream.port > 65535) {
      continue;
    }
    upstreams.push_back(upstream);
  }
  return upstreams;
}

std::vector<DnsUpstream> UpstreamsFromResolvConf(const std::string& path) {
  std::ifstream in(path);
  std::string line, list;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string keyword, address;
    if (words >> keyword >> address && keyword == "nameserver") list += address + ",";
  }
  return ParseUpstreams(list);
}

void DnsResponder::Forward(std::string query, sockaddr_in from) {
  for (const auto& upstream : upstreams_) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(upstream.port));
    ::inet_pton(AF_INET, upstream.address.c_str(), &to.sin_addr);
    timeval timeout{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    // connect: only the upstream's answers are taken on this socket.
    char buffer[4096];
    ssize_t n = -1;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 &&
        ::send(fd, query.data(), query.size(), 0) == static_cast<ssize_t>(query.size())) {
      n = ::recv(fd, buffer, sizeof buffer, 0);
    }
    ::close(fd);
    // The answer must be for this query (same id) before it goes back to the group.
    if (n >= 12 && buffer[0] == query[0] && buffer[1] == query[1]) {
      ::sendto(fd_, buffer, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), sizeof from);
      return;
    }
  }
}

std::unique_ptr<DnsResponder> DnsResponder::Start(const std::string& host, int port, const DnsTable& table,
                                                  std::string domain, std::string* error,
                                                  std::vector<DnsUpstream> upstreams,
                                                  std::optional<Ipv4Prefix> clients) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (fd < 0 || ::inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    *error = "cannot listen on " + host + ":" + std::to_string(port) + "/udp: " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return nullptr;
  }
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return std::unique_ptr<DnsResponder>(
      new DnsResponder(fd, ntohs(address.sin_port), table, std::move(domain), std::move(upstreams), clients));
}

DnsResponder::DnsResponder(int fd, int port, const DnsTable& table, std::string domain,
                           std::vector<DnsUpstream> upstreams, std::optional<Ipv4Prefix> clients)
    : fd_(fd), port_(port), clients_(clients), table_(table), domain_(std::move(domain)),
      upstreams_(std::move(upstreams)) {
  thread_ = std::thread([this] { Serve(); });
}

DnsResponder::~DnsResponder() {
  stopping_ = true;
  thread_.join();
  // Forwarding threads use the socket to answer: they end within their upstream timeouts.
  for (int i = 0; i < 100 && forwarding_ > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::close(fd_);
}

void DnsResponder::Serve() {
  char buffer[1500];
  while (!stopping_) {
    pollfd ready{fd_, POLLIN, 0};
    if (::poll(&ready, 1, 200) <= 0) continue;
    sockaddr_in from{};
    socklen_t from_length = sizeof from;
    ssize_t n = ::recvfrom(fd_, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_length);
    if (n <= 0) continue;
    if (clients_ && !clients_->Contains(ntohl(from.sin_addr.s_addr))) continue;
    std::string query(buffer, static_cast<size_t>(n));
    bool outside = false;
    auto reply = AnswerDnsQuery(query, table_, domain_, upstreams_.empty() ? nullptr : &outside);
    if (outside) {
      if (forwarding_ >= 64) {
        reply = AnswerDnsQuery(query, table_, domain_);  // too many in flight: refused
      } else {
        ++forwarding_;
        std::thread([this, query = std::move(query), from] {
          Forward(query, from);
          --forwarding_;
        }).detach();
        continue;
      }
    }
    if (reply) ::sendto(fd_, reply->data(), reply->size(), 0, reinterpret_cast<sockaddr*>(&from), from_length);
  }
}

}  // namespace skiff::network
