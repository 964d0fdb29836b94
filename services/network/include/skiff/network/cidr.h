#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace skiff::network {

// An IPv4 prefix such as 10.1.0.0/24 (host bits must be zero, as ARM requires).
struct Ipv4Prefix {
  uint32_t network = 0;
  int length = 0;

  static std::optional<Ipv4Prefix> Parse(std::string_view text);
  uint32_t Mask() const { return length == 0 ? 0 : ~uint32_t{0} << (32 - length); }
  uint64_t Size() const { return uint64_t{1} << (32 - length); }
  uint32_t Last() const { return network | ~Mask(); }
  bool Contains(uint32_t address) const { return (address & Mask()) == network; }
  bool Contains(const Ipv4Prefix& other) const { return other.length >= length && Contains(other.network); }
  bool Overlaps(const Ipv4Prefix& other) const { return Contains(other) || other.Contains(*this); }
  std::string ToString() const;
  bool operator==(const Ipv4Prefix& other) const { return network == other.network && length == other.length; }
};

std::optional<uint32_t> ParseIpv4(std::string_view text);
std::string FormatIpv4(uint32_t address);

// A subnet's usable addresses, as Azure reserves them: the network address, the gateway (.1,
// the bridge), .2 and .3, and the broadcast address are never handed out.
inline constexpr uint32_t kReservedAtStart = 4;
uint32_t FirstUsable(const Ipv4Prefix& subnet);
uint32_t LastUsable(const Ipv4Prefix& subnet);
inline uint32_t GatewayOf(const Ipv4Prefix& subnet) { return subnet.network + 1; }

}  // namespace skiff::network
