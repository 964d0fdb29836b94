#include "skiff/network/dns.h"

#include <algorithm>
#include <cctype>

namespace skiff::network {

namespace {
std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

DnsTable::DnsTable(std::string zone, std::string internal_domain)
    : zone_(Lower(std::move(zone))), internal_domain_(Lower(std::move(internal_domain))) {}

void DnsTable::Rebuild(const std::vector<std::pair<GroupClaim, SubnetRow>>& claims) {
  decltype(public_names_) public_names;
  decltype(internal_) internal;
  for (const auto& [claim, subnet] : claims) {
    if (!claim.dns_label.empty()) {
      public_names[claim.dns_label + "." + claim.location + "." + zone_] = {claim, subnet};
    }
    auto& names = internal[subnet.Domain()];
    names[Lower(claim.name)].push_back(claim.private_ip);
    names[Lower(claim.name) + "." + internal_domain_].push_back(claim.private_ip);
  }
  std::lock_guard lock(mutex_);
  public_names_ = std::move(public_names);
  internal_ = std::move(internal);
}

DnsAnswer DnsTable::Lookup(const std::string& qname_any_case, bool type_a, const std::string& domain) const {
  const std::string qname = Lower(qname_any_case);
  DnsAnswer answer;
  std::lock_guard lock(mutex_);
  if (qname == zone_ || EndsWith(qname, "." + zone_)) {
    auto it = public_names_.find(qname);
    if (it == public_names_.end()) {
      answer.kind = DnsAnswer::Kind::kNxDomain;
      return answer;
    }
    answer.kind = type_a ? DnsAnswer::Kind::kFound : DnsAnswer::Kind::kNoData;
    const auto& claim = it->second.first;
    if (type_a) answer.addresses.push_back(claim.public_ip ? *claim.public_ip : claim.private_ip);
    return answer;
  }
  if (domain.empty()) return answer;  // the public listener serves its zone only
  auto names = internal_.find(domain);
  const bool internal_name = qname.find('.') == std::string::npos || qname == internal_domain_ ||
                             EndsWith(qname, "." + internal_domain_);
  if (!internal_name) return answer;  // no forwarding to outside resolvers (yet): refused
  if (names == internal_.end() || !names->second.count(qname)) {
    answer.kind = DnsAnswer::Kind::kNxDomain;
    return answer;
  }
  answer.kind = type_a ? DnsAnswer::Kind::kFound : DnsAnswer::Kind::kNoData;
  if (type_a) answer.addresses = names->second.at(qname);
  return answer;
}

std::optional<std::pair<GroupClaim, SubnetRow>> DnsTable::FindFqdn(const std::string& fqdn) const {
  std::lock_guard lock(mutex_);
  auto it = public_names_.find(Lower(fqdn));
  if (it == public_names_.end()) return std::nullopt;
  return it->second;
}

size_t DnsTable::size() const {
  std::lock_guard lock(mutex_);
  return public_names_.size();
}

}  // namespace skiff::network
