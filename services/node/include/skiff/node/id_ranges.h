#pragma once

#include <cstdint>
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
};

// Hands each group a range of host ids of its own, so that root in one group's containers is
// neither host root nor any other group's user. A group keeps its range while it is on the node,
// across node restarts (recorded as `<state_dir>/ids/<group id>`, the range's index), because
// its running containers and its files on disk carry those ids. Thread-safe.
class IdRangeAllocator {
 public:
  IdRangeAllocator(UserNamespaceOptions options, std::string state_dir);
  // The group's range: the one it holds, else its preferred one if free, else the next free one
  // after that; nullopt when none is free.
  std::optional<confine::IdRange> Acquire(const std::string& group_id);
  // The range a group gets when it is free: fixed by the group id, so that a group tends to get
  // the same range on every node.
  confine::IdRange Preferred(const std::string& group_id) const;
  void Release(const std::string& group_id);
  // Every range held by an id starting with `prefix` (spares of an earlier node process).
  void ReleaseStartingWith(const std::string& prefix);
  // `from`'s range becomes `to`'s (a spare's, taken by a group); nullopt, and nothing moves,
  // when `from` holds none or `to` holds one already.
  std::optional<confine::IdRange> Transfer(const std::string& from, const std::string& to);
  std::optional<confine::IdRange> Held(const std::string& group_id) const;

 private:
  confine::IdRange RangeAt(uint32_t index) const;
  uint32_t PreferredIndex(const std::string& group_id) const;
  UserNamespaceOptions options_;
  std::string dir_;  // empty: nothing recorded
  mutable std::mutex mutex_;
  std::map<std::string, uint32_t> held_;
  std::map<uint32_t, std::string> by_index_;
};

}  // namespace skiff::node
