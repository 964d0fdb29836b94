#pragma once

#include <string>
#include <vector>

// Mount points as the kernel lists them (/proc/self/mountinfo), for the mounts Skiff makes
// beneath its own directories (volume tmpfs, resolved gitRepo directories, guest memory).
namespace skiff::confine {

// `path` exactly as /proc/self/mountinfo spells it (absolute, no symlinks, no trailing '/').
bool IsMountPoint(const std::string& path);
// Every mount point strictly beneath `dir`, deepest first.
std::vector<std::string> MountsBeneath(const std::string& dir);
// Detaches every mount beneath `dir` (deepest first), so that removing `dir` removes only what
// is really there. Returns how many were detached.
int UnmountBeneath(const std::string& dir);

}  // namespace skiff::confine
