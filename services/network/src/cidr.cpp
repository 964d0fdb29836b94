#include "skiff/network/cidr.h"

#include <charconv>

namespace skiff::network {

std::optional<uint32_t> ParseIpv4(std::string_view text) {
  uint32_t address = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (text.empty() || text.front() != '.') return std::nullopt;
      text.remove_prefix(1);
    }
    if (text.empty() || (text.size() > 1 && text[0] == '0' && text[1] >= '0' && text[1] <= '9')) return std::nullopt;
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + std::min<size_t>(text.size(), 3), value);
    if (ec != std::errc() || value > 255) return std::nullopt;
    text.remove_prefix(static_cast<size_t>(end - text.data()));
    address = (address << 8) | value;
  }
  if (!text.empty()) return std::nullopt;
  return address;
}

std::string FormatIpv4(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) + "." +
         std::to_string(a & 255);
}

std::optional<Ipv4Prefix> Ipv4Prefix::Parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto address = ParseIpv4(text.substr(0, slash));
  std::string_view length_text = text.substr(slash + 1);
  int length = -1;
  auto [end, ec] = std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
  if (!address || ec != std::errc() || end != length_text.data() + length_text.size() || length < 0 || length > 32) {
    return std::nullopt;
  }
  Ipv4Prefix prefix{*address, length};
  if ((prefix.network & ~prefix.Mask()) != 0) return std::nullopt;
  return prefix;
}

std::string Ipv4Prefix::ToString() const { return FormatIpv4(network) + "/" + std::to_string(length); }

uint32_t FirstUsable(const Ipv4Prefix& subnet) { return subnet.network + kReservedAtStart; }
uint32_t LastUsable(const Ipv4Prefix& subnet) { return subnet.Last() - 1; }

}  // namespace skiff::network
