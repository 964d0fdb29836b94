#include "skiff/network/dns.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace skiff::network {

namespace {

// ldns objects freed on every path.
struct PacketFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using Packet = std::unique_ptr<ldns_pkt, PacketFree>;

}  // namespace

std::optional<std::string> AnswerDnsQuery(const std::string& wire, const DnsTable& table, const std::string& domain) {
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

std::unique_ptr<DnsResponder> DnsResponder::Start(const std::string& host, int port, const DnsTable& table,
                                                  std::string domain, std::string* error) {
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
  return std::unique_ptr<DnsResponder>(new DnsResponder(fd, ntohs(address.sin_port), table, std::move(domain)));
}

DnsResponder::DnsResponder(int fd, int port, const DnsTable& table, std::string domain)
    : fd_(fd), port_(port), table_(table), domain_(std::move(domain)) {
  thread_ = std::thread([this] { Serve(); });
}

DnsResponder::~DnsResponder() {
  stopping_ = true;
  thread_.join();
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
    auto reply = AnswerDnsQuery(std::string(buffer, static_cast<size_t>(n)), table_, domain_);
    if (reply) ::sendto(fd_, reply->data(), reply->size(), 0, reinterpret_cast<sockaddr*>(&from), from_length);
  }
}

}  // namespace skiff::network
