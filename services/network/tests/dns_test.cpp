#include "skiff/network/dns.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include <ldns/ldns.h>  // last: it is a C header that redefines bool

using namespace skiff::network;

namespace {

std::pair<GroupClaim, SubnetRow> Entry(const std::string& name, const std::string& domain_vnet, uint32_t ip,
                                       std::optional<uint32_t> public_ip = std::nullopt, const std::string& label = "") {
  GroupClaim claim;
  claim.name = name;
  claim.location = "westeurope";
  claim.private_ip = ip;
  claim.public_ip = public_ip;
  claim.dns_label = label;
  SubnetRow subnet;
  subnet.id = domain_vnet + "/subnets/a";
  subnet.vnet_id = domain_vnet;
  return {claim, subnet};
}

std::unique_ptr<DnsTable> MakeTable() {
  auto table = std::make_unique<DnsTable>("skiff.test", "skiff.internal");
  table->Rebuild({Entry("web", "vnet1", 0x0A010004, 0x7F640001, "shop"), Entry("db", "vnet1", 0x0A010005),
                 Entry("other", "vnet2", 0x0A020004)});
  return table;
}

TEST(DnsTable, PublicZoneAnswersLabelsOnly) {
  auto owned = MakeTable();
  const DnsTable& table = *owned;
  auto found = table.Lookup("SHOP.westeurope.skiff.test", true, "");
  ASSERT_EQ(found.kind, DnsAnswer::Kind::kFound);
  EXPECT_EQ(found.addresses, std::vector<uint32_t>{0x7F640001});
  EXPECT_EQ(table.Lookup("shop.westeurope.skiff.test", false, "").kind, DnsAnswer::Kind::kNoData);
  EXPECT_EQ(table.Lookup("nope.westeurope.skiff.test", true, "").kind, DnsAnswer::Kind::kNxDomain);
  EXPECT_EQ(table.Lookup("web", true, "").kind, DnsAnswer::Kind::kRefused);
  EXPECT_EQ(table.Lookup("example.com", true, "").kind, DnsAnswer::Kind::kRefused);
}

TEST(DnsTable, GroupNamesResolveOnlyInsideTheirNetwork) {
  auto owned = MakeTable();
  const DnsTable& table = *owned;
  EXPECT_EQ(table.Lookup("db", true, "vnet1").addresses, std::vector<uint32_t>{0x0A010005});
  EXPECT_EQ(table.Lookup("db.skiff.internal", true, "vnet1").addresses, std::vector<uint32_t>{0x0A010005});
  EXPECT_EQ(table.Lookup("db", true, "vnet2").kind, DnsAnswer::Kind::kNxDomain);
  EXPECT_EQ(table.Lookup("other", true, "vnet1").kind, DnsAnswer::Kind::kNxDomain);
  EXPECT_EQ(table.Lookup("shop.westeurope.skiff.test", true, "vnet2").kind, DnsAnswer::Kind::kFound);
}

std::string Query(const std::string& name, ldns_rr_type type) {
  ldns_pkt* query = nullptr;
  EXPECT_EQ(ldns_pkt_query_new_frm_str(&query, name.c_str(), type, LDNS_RR_CLASS_IN, LDNS_RD), LDNS_STATUS_OK);
  ldns_pkt_set_id(query, 4242);
  uint8_t* wire = nullptr;
  size_t size = 0;
  ldns_pkt2wire(&wire, query, &size);
  std::string bytes(reinterpret_cast<char*>(wire), size);
  free(wire);
  ldns_pkt_free(query);
  return bytes;
}

TEST(DnsWire, AnswersAQueryPacket) {
  auto owned = MakeTable();
  const DnsTable& table = *owned;
  auto reply = AnswerDnsQuery(Query("shop.westeurope.skiff.test.", LDNS_RR_TYPE_A), table, "");
  ASSERT_TRUE(reply);
  ldns_pkt* answer = nullptr;
  ASSERT_EQ(ldns_wire2pkt(&answer, reinterpret_cast<const uint8_t*>(reply->data()), reply->size()), LDNS_STATUS_OK);
  EXPECT_EQ(ldns_pkt_id(answer), 4242);
  EXPECT_TRUE(ldns_pkt_aa(answer));
  EXPECT_EQ(ldns_pkt_get_rcode(answer), LDNS_RCODE_NOERROR);
  ASSERT_EQ(ldns_pkt_ancount(answer), 1);
  char* text = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(answer), 0), 0));
  EXPECT_STREQ(text, "127.100.0.1");
  free(text);
  ldns_pkt_free(answer);

  auto nx = AnswerDnsQuery(Query("nope.westeurope.skiff.test.", LDNS_RR_TYPE_A), table, "");
  ldns_wire2pkt(&answer, reinterpret_cast<const uint8_t*>(nx->data()), nx->size());
  EXPECT_EQ(ldns_pkt_get_rcode(answer), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(answer);
}

TEST(DnsWire, GarbageGetsNoAnswer) {
  auto owned = MakeTable();
  const DnsTable& table = *owned;
  EXPECT_FALSE(AnswerDnsQuery("", table, ""));
  EXPECT_FALSE(AnswerDnsQuery(std::string(3, '\xff'), table, ""));
  std::string truncated = Query("shop.westeurope.skiff.test.", LDNS_RR_TYPE_A);
  truncated.resize(truncated.size() - 3);
  EXPECT_FALSE(AnswerDnsQuery(truncated, table, ""));
}

// Sends `query` to 127.0.0.1:`port` and waits up to `seconds` for the answer; its size or -1.
ssize_t AskOverUdp(int port, const std::string& query, char* buffer, size_t size, int seconds) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  timeval timeout{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::sendto(fd, query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  ssize_t n = ::recv(fd, buffer, size, 0);
  ::close(fd);
  return n;
}

TEST(DnsResponderSocket, AnswersOverUdp) {
  auto owned = MakeTable();
  const DnsTable& table = *owned;
  std::string error;
  auto responder = DnsResponder::Start("127.0.0.1", 0, table, "", &error);
  ASSERT_TRUE(responder) << error;
  char buffer[512];
  ssize_t n = AskOverUdp(responder->port(), Query("shop.westeurope.skiff.test.", LDNS_RR_TYPE_A), buffer, sizeof buffer, 2);
  ASSERT_GT(n, 12);
  EXPECT_EQ(static_cast<unsigned char>(buffer[0]) * 256 + static_cast<unsigned char>(buffer[1]), 4242);
}

// A bridge's responder serves its own subnet's groups: a query from any other address (another
// network's group asking this bridge's gateway) gets no answer at all.
TEST(DnsResponder, AnswersOnlyClientsOfItsSubnet) {
  auto owned = MakeTable();
  const DnsTable& table = *owned;
  auto ask = [](int port) {
    char buffer[512];
    return AskOverUdp(port, Query("shop.westeurope.skiff.test.", LDNS_RR_TYPE_A), buffer, sizeof buffer, 1);
  };
  std::string error;
  auto foreign = DnsResponder::Start("127.0.0.1", 0, table, "", &error, {}, Ipv4Prefix::Parse("10.0.0.0/24"));
  ASSERT_TRUE(foreign) << error;
  EXPECT_LT(ask(foreign->port()), 0);  // 127.0.0.1 is not in 10.0.0.0/24: dropped
  auto own = DnsResponder::Start("127.0.0.1", 0, table, "", &error, {}, Ipv4Prefix::Parse("127.0.0.0/8"));
  ASSERT_TRUE(own) << error;
  EXPECT_GT(ask(own->port()), 12);
}

}  // namespace

namespace {

int UdpSocket(int* port) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  *port = ntohs(address.sin_port);
  timeval timeout{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  return fd;
}

}  // namespace

TEST(DnsResponderSocket, ForwardsOutsideNamesFromInsideANetworkToItsUpstream) {
  auto owned = MakeTable();
  // A fake upstream on loopback: answers whatever it is asked with one fixed A record.
  int upstream_port = 0;
  int upstream = UdpSocket(&upstream_port);
  std::string error;
  auto responder = DnsResponder::Start("127.0.0.1", 0, *owned, "vnet1", &error,
                                       ParseUpstreams("127.0.0.1:" + std::to_string(upstream_port)));
  ASSERT_TRUE(responder) << error;
  int client_port = 0;
  int client = UdpSocket(&client_port);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(responder->port()));
  ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  std::string q = Query("example.org.", LDNS_RR_TYPE_A);
  ::sendto(client, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);

  char buffer[512];
  sockaddr_in from{};
  socklen_t from_length = sizeof from;
  ssize_t n = ::recvfrom(upstream, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_length);
  ASSERT_GT(n, 12);  // the query reached the upstream
  ldns_pkt* asked = nullptr;
  ASSERT_EQ(ldns_wire2pkt(&asked, reinterpret_cast<uint8_t*>(buffer), static_cast<size_t>(n)), LDNS_STATUS_OK);
  ldns_pkt_set_qr(asked, true);
  ldns_rr* rr = nullptr;
  ASSERT_EQ(ldns_rr_new_frm_str(&rr, "example.org. 60 IN A 192.0.2.7", 0, nullptr, nullptr), LDNS_STATUS_OK);
  ldns_pkt_push_rr(asked, LDNS_SECTION_ANSWER, rr);
  uint8_t* wire = nullptr;
  size_t size = 0;
  ldns_pkt2wire(&wire, asked, &size);
  ::sendto(upstream, wire, size, 0, reinterpret_cast<sockaddr*>(&from), from_length);
  free(wire);
  ldns_pkt_free(asked);

  n = ::recv(client, buffer, sizeof buffer, 0);
  ASSERT_GT(n, 12);
  ldns_pkt* answer = nullptr;
  ASSERT_EQ(ldns_wire2pkt(&answer, reinterpret_cast<uint8_t*>(buffer), static_cast<size_t>(n)), LDNS_STATUS_OK);
  EXPECT_EQ(ldns_pkt_id(answer), 4242);
  ASSERT_EQ(ldns_pkt_ancount(answer), 1);
  char* text = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(answer), 0), 0));
  EXPECT_STREQ(text, "192.0.2.7");
  free(text);
  ldns_pkt_free(answer);
  ::close(client);
  ::close(upstream);
}

TEST(DnsUpstreams, ParsesListsAndResolvConf) {
  auto list = ParseUpstreams(" 10.0.0.2, 127.0.0.53:5353 ,bogus, 1.2.3.4:0");
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1].address, "127.0.0.53");
  EXPECT_EQ(list[1].port, 5353);
  char path[] = "/tmp/skiff-resolv-XXXXXX";
  int fd = ::mkstemp(path);
  std::string text = "# comment\nnameserver 10.9.8.7\nsearch example\nnameserver fe80::1\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  auto from_file = UpstreamsFromResolvConf(path);
  ::unlink(path);
  ASSERT_EQ(from_file.size(), 1u);
  EXPECT_EQ(from_file[0].address, "10.9.8.7");
}
