#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "skiff/confine/beneath.h"

// Host id ranges for user namespaces: root in a container is a host id with no rights on the
// host. Image layers and volumes keep their ids on disk and are seen through idmapped mounts
// (mount_setattr MOUNT_ATTR_IDMAP), so one cached layer serves every group, each in its range.
namespace skiff::confine {

// Container ids 0..size-1 are host ids host_base..host_base+size-1, for users and groups alike.
struct IdRange {
  uint32_t host_base = 0;
  uint32_t size = 0;
  bool operator==(const IdRange& other) const { return host_base == other.host_base && size == other.size; }
  bool operator!=(const IdRange& other) const { return !(*this == other); }
};

// A user namespace with `range` as its uid and gid map, held by the returned descriptor (the
// short-lived process that made it is gone). Invalid and `error` when it cannot be made.
UniqueFd UserNamespaceFor(const IdRange& range, std::string* error);

// Attaches at `target` (an existing directory) a bind mount of `source` whose ids are shifted
// into `range`: a file owned by 0 on disk is owned by host_base there, and a file the range's
// ids create there is stored with the unshifted id. Not recursive: mounts beneath `source`
// are not carried; `nosuid_nodev` for what a tenant writes (volumes), not for image layers,
// whose setuid files work inside the container as its own root. Fails on file systems without
// idmapped mounts (tmpfs before Linux 6.3).
std::optional<std::string> BindIdmapped(const std::string& source, const IdRange& range, const std::string& target,
                                        bool nosuid_nodev);

}  // namespace skiff::confine
