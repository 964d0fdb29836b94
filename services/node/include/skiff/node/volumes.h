#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "skiff/confine/idmap.h"
#include "skiff/containerinstance/v1/container_group.pb.h"

namespace skiff::node {

// How the node confines the volumes a tenant asks for.
struct VolumeOptions {
  // Named persistent shares (the azureFile equivalent):
  // <root>/<subscription key>/<account>/{account-key, shares/<share>}.
  std::string shares_root;
  // gitRepo: https:// only, http:// to these hosts ("host" or "host:port").
  std::vector<std::string> git_insecure_hosts;
  std::chrono::seconds git_timeout{120};
  int64_t git_max_bytes = 512LL << 20;  // the clone's tmpfs: a larger repository fails the group
  uint32_t git_uid = 65534;             // the clone runs as this user (nobody), never as root
  uint32_t git_gid = 65534;
  // emptyDir is a tmpfs of this size (its pages count against the writing container's memory);
  // 0 leaves it a plain directory on the node's disk, without a cap.
  int64_t empty_dir_max_bytes = 1LL << 30;
  std::string git = "git";
};

// The one place where every name and path of a group that the node turns into a host path is
// checked again: group id, container and volume names, mount paths, secret file names, share
// names, repository URLs and directories. The gateway checks the same rules; the node does not
// rely on it. Returns "InvalidVolume: <why>" (or "InvalidGroup: ...") on the first problem.
std::optional<std::string> CheckGroupPaths(const std::string& group_id,
                                           const containerinstance::v1::ContainerGroup& group,
                                           const VolumeOptions& options);

// Everything a group's volumes are prepared with.
struct VolumeContext {
  std::string subscription_id;
  std::string group_id;
  std::string volume_root;  // the node's own directory for this group's volumes
  std::string netns;        // the group's network namespace: a clone reaches only what the group may
  // The group's user namespace range: volumes belong to its root (emptyDir, secrets and clones
  // chowned, shares seen through an idmapped mount). Unset: host ids.
  std::optional<confine::IdRange> ids;
};

// Opens a sealed value for the place it is bound to (libs/secrets' contexts); a plain value
// comes back as it is.
using SecretOpener = std::function<std::optional<std::string>(const std::string& value, const std::string& context)>;

// Prepares each volume beneath ctx.volume_root and returns the host directory each volume name
// is mounted from, or "Code: message" (VolumeFailed, SecretUnavailable, ShareKeyMismatch,
// RepositoryTooLarge, RepositoryTimeout, InvalidVolume). Run CheckGroupPaths first. Prepared
// volumes are kept across node restarts (a second call finds them and reuses them).
std::optional<std::string> PrepareVolumes(const containerinstance::v1::ContainerGroup& group, const VolumeContext& ctx,
                                          const VolumeOptions& options, const SecretOpener& open_secret,
                                          std::map<std::string, std::string>* paths);

// Writes a secret volume: each file base64-decoded, mode 0400, in `dir` (which the caller made:
// a tmpfs, so decrypted values never reach the node's disk). Error text on failure.
// With `owner`, the files and the directory belong to that range's root.
std::optional<std::string> WriteSecretVolume(const std::string& dir, const std::map<std::string, std::string>& files,
                                             const std::optional<confine::IdRange>& owner = std::nullopt);

// The subscription's directory name in the share store: a digest, so that no subscription id
// becomes a path and two subscriptions never share one.
std::string ShareStoreKey(const std::string& subscription_id);

}  // namespace skiff::node
