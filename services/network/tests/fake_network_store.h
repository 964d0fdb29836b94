#pragma once

#include <map>

#include "skiff/network/network_store.h"

namespace skiff::network::fakes {

// NetworkStore in memory. A transaction works on a copy and commits it at the end, so a body
// that returns early after writing nothing leaves the state as it was.
class FakeNetworkStore : public NetworkStore, private NetworkTx {
 public:
  void InTransaction(const std::function<void(NetworkTx&)>& body) override {
    State saved = state_;
    try {
      body(*this);
    } catch (...) {
      state_ = saved;
      throw;
    }
  }
  std::vector<std::pair<GroupClaim, SubnetRow>> AllClaims() override {
    std::vector<std::pair<GroupClaim, SubnetRow>> all;
    for (const auto& [id, claim] : state_.claims) all.emplace_back(claim, state_.subnets.at(claim.subnet_id));
    return all;
  }
  std::vector<Attachment> Attachments(const std::string& agent) override {
    std::vector<Attachment> list;
    for (const auto& [key, a] : attachments_) {
      if (a.agent == agent) list.push_back(a);
    }
    return list;
  }
  std::vector<Attachment> GroupAttachments(const std::string& agent, const std::string& group_id) override {
    std::vector<Attachment> list;
    for (const auto& a : Attachments(agent)) {
      if (a.group_id == group_id) list.push_back(a);
    }
    return list;
  }
  void SaveAttachment(const Attachment& a) override { attachments_[{a.group_id, a.netns_path}] = a; }
  void DeleteAttachment(const std::string& group_id, const std::string& netns_path) override {
    attachments_.erase({group_id, netns_path});
  }

  size_t claims() const { return state_.claims.size(); }
  size_t attachments() const { return attachments_.size(); }

 private:
  void LockAllocations() override {}
  std::optional<VnetRow> FindVnet(const std::string& id) override {
    auto it = state_.vnets.find(id);
    if (it == state_.vnets.end()) return std::nullopt;
    VnetRow row = it->second;
    row.subnets.clear();
    for (const auto& [sid, s] : state_.subnets) {
      if (s.vnet_id == id) row.subnets.push_back(s);
    }
    return row;
  }
  std::vector<VnetRow> ListVnets(const std::string& subscription, const std::string& rg) override {
    std::vector<VnetRow> list;
    for (const auto& [id, v] : state_.vnets) {
      if (v.subscription_id == subscription && (rg.empty() || v.resource_group == rg)) list.push_back(*FindVnet(id));
    }
    return list;
  }
  void SaveVnet(const VnetRow& vnet) override {
    state_.vnets[vnet.id] = vnet;
    for (auto it = state_.subnets.begin(); it != state_.subnets.end();) {
      it = it->second.vnet_id == vnet.id ? state_.subnets.erase(it) : std::next(it);
    }
    for (const auto& s : vnet.subnets) state_.subnets[s.id] = s;
  }
  void DeleteVnet(const std::string& id) override {
    state_.vnets.erase(id);
    for (auto it = state_.subnets.begin(); it != state_.subnets.end();) {
      it = it->second.vnet_id == id ? state_.subnets.erase(it) : std::next(it);
    }
  }
  std::vector<SubnetRow> AllSubnets() override {
    std::vector<SubnetRow> list;
    for (const auto& [id, s] : state_.subnets) list.push_back(s);
    return list;
  }
  std::optional<SubnetRow> FindSubnet(const std::string& id) override {
    auto it = state_.subnets.find(id);
    if (it == state_.subnets.end()) return std::nullopt;
    return it->second;
  }
  void SaveSubnet(const SubnetRow& s) override { state_.subnets[s.id] = s; }
  int64_t ClaimsInSubnet(const std::string& id) override {
    int64_t n = 0;
    for (const auto& [gid, c] : state_.claims) n += c.subnet_id == id;
    return n;
  }
  std::optional<GroupClaim> FindClaim(const std::string& id) override {
    auto it = state_.claims.find(id);
    if (it == state_.claims.end()) return std::nullopt;
    return it->second;
  }
  std::set<uint32_t> PrivateAddressesInUse(const std::string& subnet) override {
    std::set<uint32_t> used;
    for (const auto& [gid, c] : state_.claims) {
      if (c.subnet_id == subnet) used.insert(c.private_ip);
    }
    return used;
  }
  std::set<uint32_t> PublicAddressesInUse() override {
    std::set<uint32_t> used;
    for (const auto& [gid, c] : state_.claims) {
      if (c.public_ip) used.insert(*c.public_ip);
    }
    return used;
  }
  std::optional<GroupClaim> LabelHolder(const std::string& location, const std::string& label) override {
    for (const auto& [gid, c] : state_.claims) {
      if (c.location == location && c.dns_label == label) return c;
    }
    return std::nullopt;
  }
  void SaveClaim(const GroupClaim& c) override { state_.claims[c.group_id] = c; }
  void DeleteClaim(const std::string& id) override { state_.claims.erase(id); }
  std::vector<std::string> StaleUnconfirmedClaims(Millis before) override {
    std::vector<std::string> ids;
    for (const auto& [gid, c] : state_.claims) {
      if (!c.confirmed && c.claimed_at < before) ids.push_back(gid);
    }
    return ids;
  }

  struct State {
    std::map<std::string, VnetRow> vnets;
    std::map<std::string, SubnetRow> subnets;
    std::map<std::string, GroupClaim> claims;
  } state_;
  std::map<std::pair<std::string, std::string>, Attachment> attachments_;
};

}  // namespace skiff::network::fakes
