#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "skiff/confine/idmap.h"

namespace skiff::node {

// Where runc groups' user namespaces take their host ids: `ranges` disjoint ranges of
// `range_size` ids from `first_host_id` (above every id the host's own users have).
struct UserNamespaceOptions {
  bool enabled = false;
  uint32_t first_host_id = 1u << 30;
  uint32_t range_size = 65536;
  uint32_t ranges = 4096;
  // Host-wide: every node on the host claims its ranges here (a file per range, made with
  // O_EXCL), so two nodes sharing a host never hand out the same ids. Empty: in memory only.
  std::string claims_dir;
};

// Hands each group a range of host ids of its own, so that root in one group's containers is
// neither host root nor any other group's user, whichever node of the host runs it. A group
// keeps its range while it is on the node, across node restarts (the claim file names the node,
// `owner`, and the group), because its running containers and its files carry those ids.
// Thread-safe.
class IdRangeAllocator {
 public:
  IdRangeAllocator(UserNamespaceOptions options, std::string owner);
  // The group's range: the one it holds, else its preferred one if free, else the next free one
  // after that; nullopt when none is free.
  std::optional<confine::IdRange> Acquire(const std::string& group_id);
  // The range a group gets when it is free: fixed by the group id, so that a group tends to get
  // the same range on every node.
  confine::IdRange Preferred(const std::string& group_id) const;
  void Release(const std::string& group_id);
  // Every range this node holds for a group `keep` does not name (spares and groups an earlier
  // node process left behind).
  void ReleaseUnless(const std::function<bool(const std::string& group_id)>& keep);
  // `from`'s range becomes `to`'s (a spare's, taken by a group); nullopt, and nothing moves,
  // when `from` holds none or `to` holds one already.
  std::optional<confine::IdRange> Transfer(const std::string& from, const std::string& to);
  std::optional<confine::IdRange> Held(const std::string& group_id) const;

 private:
  confine::IdRange RangeAt(uint32_t index) const;
  uint32_t PreferredIndex(const std::string& group_id) const;
  std::string ClaimPath(uint32_t index) const;
  bool Claim(uint32_t index, const std::string& group_id);  // with mutex_ held
  UserNamespaceOptions options_;
  std::string owner_;
  mutable std::mutex mutex_;
  std::map<std::string, uint32_t> held_;
};

}  // namespace skiff::node
