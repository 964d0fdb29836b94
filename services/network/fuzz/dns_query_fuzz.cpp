// libFuzzer: a hostile DNS packet (from any container on a bridge) through the responder's
// parser and answer builder, for the public listener and a virtual network's domain.
#include <cstddef>
#include <cstdint>
#include <string>

#include "skiff/network/dns.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const skiff::network::DnsTable table("skiff.test", "skiff.internal");
  const std::string query(reinterpret_cast<const char*>(data), size);
  bool outside = false;
  (void)skiff::network::AnswerDnsQuery(query, table, "");
  (void)skiff::network::AnswerDnsQuery(query, table, "net-1.skiff.internal", &outside);
  return 0;
}
