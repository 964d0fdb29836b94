#include "skiff/node/volumes.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "skiff/confine/beneath.h"
#include "skiff/confine/mounts.h"
#include "skiff/confine/names.h"
#include "skiff/crypto/crypto.h"
#include "skiff/secrets/group_secrets.h"
#include "skiff/node/exec_process.h"

namespace skiff::node {
namespace ci = containerinstance::v1;
namespace fs = std::filesystem;
using confine::UniqueFd;

namespace {

std::optional<std::string> CheckMounts(const google::protobuf::RepeatedPtrField<ci::VolumeMount>& mounts,
                                       const std::set<std::string>& volumes, const std::string& container) {
  for (const auto& mount : mounts) {
    if (volumes.count(mount.name()) == 0) {
      return "InvalidVolume: container '" + container + "' mounts '" + mount.name() + "', which is no volume of the group";
    }
    if (auto why = confine::CheckMountPath(mount.mount_path())) {
      return "InvalidVolume: the mount path '" + mount.mount_path() + "' of container '" + container + "' " + *why;
    }
  }
  return std::nullopt;
}

bool IsGroupId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id.rfind("standby-", 0) == 0) return false;
  for (unsigned char c : id) {
    if (!std::isalnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// Mounts a size-capped tmpfs on the directory `dir` (an open descriptor), unless a node run
// before this one already did. The mount goes onto the descriptor itself, not a path.
std::optional<std::string> MountTmpfs(int dir, const std::string& path, int64_t max_bytes, const std::string& extra) {
  if (confine::IsMountPoint(path)) return std::nullopt;
  const std::string data = "size=" + std::to_string(max_bytes) + extra;
  if (::mount("skiff-volume", confine::FdPath(dir).c_str(), "tmpfs", MS_NOSUID | MS_NODEV, data.c_str()) != 0) {
    return Errno("mount a tmpfs on " + path);
  }
  return std::nullopt;
}

std::string Trimmed(std::string text, size_t limit = 400) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > limit) text = text.substr(0, limit) + "…";
  return text;
}

// The account key's record: a random salt and SHA-256(salt | key), never the key itself.
std::string KeyRecord(const std::string& salt, const std::string& key) {
  return crypto::Sha256Hex(salt) + " " + crypto::Sha256Hex(salt + key) + "\n";
}

std::optional<std::string> CheckAccountKey(int account_dir, const std::string& account, const std::string& key,
                                           const std::string& volume) {
  constexpr const char* kRecord = "account-key";
  UniqueFd record(::openat(account_dir, kRecord, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (record.Valid()) {  // first use: this key becomes the account's
    std::string salt = crypto::RandomBytes(16);
    std::string line = crypto::Base64Encode(salt) + " " + KeyRecord(salt, key);
    if (::write(record.Get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      ::unlinkat(account_dir, kRecord, 0);
      return "VolumeFailed: " + Errno("cannot record the key of storage account '" + account + "'");
    }
    return std::nullopt;
  }
  if (errno != EEXIST) return "VolumeFailed: " + Errno("cannot open the key of storage account '" + account + "'");
  record = UniqueFd(::openat(account_dir, kRecord, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  char buffer[512];
  ssize_t n = record.Valid() ? ::read(record.Get(), buffer, sizeof buffer) : -1;
  std::string stored = n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
  auto space = stored.find(' ');
  auto salt = space == std::string::npos ? std::nullopt : crypto::Base64Decode(stored.substr(0, space));
  if (!salt) return "VolumeFailed: the key record of storage account '" + account + "' is unreadable";
  if (!crypto::ConstantTimeEquals(stored.substr(space + 1), KeyRecord(*salt, key))) {
    return "ShareKeyMismatch: the storageAccountKey of volume '" + volume + "' is not the key of storage account '" +
           account + "'";
  }
  return std::nullopt;
}

std::optional<std::string> PrepareShare(const ci::AzureFileVolume& share, const std::string& volume,
                                        const VolumeContext& ctx, const VolumeOptions& options,
                                        const SecretOpener& open_secret, std::string* path) {
  auto key = open_secret(share.storage_account_key(), secrets::ShareKeyContext(ctx.subscription_id, ctx.group_id, volume));
  if (!key) return "SecretUnavailable: the storageAccountKey of volume '" + volume + "' cannot be decrypted on this node";
  std::error_code ec;
  fs::create_directories(options.shares_root, ec);
  ::chmod(options.shares_root.c_str(), 0700);
  UniqueFd root = confine::OpenDirectory(options.shares_root);
  if (!root.Valid()) return "VolumeFailed: " + Errno("cannot open the share store");
  const std::string account_rel = ShareStoreKey(ctx.subscription_id) + "/" + share.storage_account_name();
  UniqueFd account = confine::MakeDirectoriesBeneath(root.Get(), account_rel, 0700);
  if (!account.Valid()) return "VolumeFailed: " + Errno("cannot open storage account '" + share.storage_account_name() + "'");
  if (auto error = CheckAccountKey(account.Get(), share.storage_account_name(), *key, volume)) return error;
  const std::string share_rel = "shares/" + share.share_name();
  UniqueFd dir = confine::MakeDirectoriesBeneath(account.Get(), share_rel, 0755);
  if (!dir.Valid()) return "VolumeFailed: " + Errno("cannot open share '" + share.share_name() + "'");
  *path = options.shares_root + "/" + account_rel + "/" + share_rel;
  if (!ctx.ids) return std::nullopt;
  // Groups of one subscription share it, each in its own id range: the share keeps unshifted
  // ids on disk and each group sees it through an idmapped mount of its range, on a path of the
  // group's own (the store itself stays closed to every range).
  const std::string mapped = ctx.volume_root + "/.shares/" + volume;
  if (!confine::IsMountPoint(mapped)) {
    UniqueFd volumes = confine::OpenDirectory(ctx.volume_root);
    UniqueFd target = volumes.Valid() ? confine::MakeDirectoriesBeneath(volumes.Get(), ".shares/" + volume, 0755)
                                      : UniqueFd();
    if (!target.Valid()) return "VolumeFailed: " + Errno("cannot create the mount point of volume '" + volume + "'");
    if (auto error = confine::BindIdmapped(*path, *ctx.ids, mapped, true)) {
      return "VolumeFailed: cannot map share '" + share.share_name() + "' into the group: " + *error;
    }
  }
  *path = mapped;
  return std::nullopt;
}

std::optional<std::string> PrepareSecret(int volumes, const ci::Volume& volume, const std::string& path,
                                         const SecretOpener& open_secret, const VolumeContext& ctx) {
  const std::optional<confine::IdRange>& ids = ctx.ids;
  std::map<std::string, std::string> files;
  size_t total = 0;
  for (const auto& [name, sealed] : volume.secret()) {
    auto opened = open_secret(sealed, secrets::SecretFileContext(ctx.subscription_id, ctx.group_id, volume.name(), name));
    if (!opened) return "SecretUnavailable: the secret volume '" + volume.name() + "' cannot be decrypted on this node";
    total += opened->size();
    files[name] = *opened;
  }
  UniqueFd dir = confine::MakeDirectoriesBeneath(volumes, volume.name(), 0700);
  if (!dir.Valid()) return "VolumeFailed: " + Errno("cannot create the secret volume '" + volume.name() + "'");
  // On a tmpfs: decrypted values never reach the node's disk.
  if (auto error = MountTmpfs(dir.Get(), path, static_cast<int64_t>(total) * 2 + (64 << 10), ",mode=0700")) {
    return "VolumeFailed: " + *error;
  }
  if (auto error = WriteSecretVolume(path, files, ids)) return "VolumeFailed: " + *error;
  return std::nullopt;
}

// Runs `args` as the clone user inside the group's network namespace, under a time limit.
int RunConfined(const VolumeContext& ctx, const VolumeOptions& options, const std::vector<std::string>& args,
                std::string* output) {
  std::vector<std::string> command{"timeout",
                                   "--kill-after=5",
                                   std::to_string(options.git_timeout.count()),
                                   "nsenter",
                                   "--net=" + ctx.netns,
                                   "--",
                                   "setpriv",
                                   "--reuid=" + std::to_string(options.git_uid),
                                   "--regid=" + std::to_string(options.git_gid),
                                   "--clear-groups",
                                   "--no-new-privs",
                                   "--inh-caps=-all",
                                   "--",
                                   "env",
                                   "-i",
                                   "PATH=/usr/local/bin:/usr/bin:/bin",
                                   "HOME=/nonexistent",
                                   "GIT_TERMINAL_PROMPT=0",
                                   "GIT_CONFIG_NOSYSTEM=1",
                                   "GIT_ALLOW_PROTOCOL=https:http",
                                   options.git,
                                   "-c",
                                   "protocol.file.allow=never",
                                   "-c",
                                   "core.hooksPath=/dev/null"};
  command.insert(command.end(), args.begin(), args.end());
  return RunProgram(command, output);
}

std::optional<std::string> PrepareRepository(int volumes, const ci::Volume& volume, const std::string& volume_root,
                                             const VolumeContext& ctx, const VolumeOptions& options,
                                             std::string* path) {
  const auto& repo = volume.git_repo();
  const std::string target = volume_root + "/" + volume.name();
  UniqueFd dir = confine::MakeDirectoriesBeneath(volumes, volume.name(), 0755);
  if (!dir.Valid()) return "VolumeFailed: " + Errno("cannot create the gitRepo volume '" + volume.name() + "'");
  if (!confine::IsMountPoint(target)) {
    // The clone user need not reach the node's root (which may be closed to it): it clones into a
    // tmpfs (the size cap) in a staging directory of its own, which then moves into the volume.
    const std::string staging_root = "/run/skiff-clones";
    std::error_code ec;
    fs::create_directories(staging_root, ec);
    ::chmod(staging_root.c_str(), 0711);
    const std::string staging = staging_root + "/" + crypto::NewUuid();
    if (::mkdir(staging.c_str(), 0700) != 0) return "VolumeFailed: " + Errno("create " + staging);
    auto drop_staging = [&] {
      ::umount2(staging.c_str(), MNT_DETACH);
      ::rmdir(staging.c_str());
    };
    const std::string data = "size=" + std::to_string(options.git_max_bytes) + ",mode=0755,uid=" +
                             std::to_string(options.git_uid) + ",gid=" + std::to_string(options.git_gid);
    if (::mount("skiff-volume", staging.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, data.c_str()) != 0) {
      std::string error = Errno("mount the clone's tmpfs");
      drop_staging();
      return "VolumeFailed: " + error;
    }
    std::string output;
    int status = RunConfined(ctx, options, {"clone", "--quiet", "--no-hardlinks", "--", repo.repository(), staging}, &output);
    if (status == 0 && !repo.revision().empty()) {
      status = RunConfined(ctx, options, {"-C", staging, "checkout", "--quiet", repo.revision(), "--"}, &output);
    }
    if (status != 0) {
      // git names a full disk in many ways (a failed write, a missing object): read the tmpfs.
      struct statvfs space {};
      const bool full = ::statvfs(staging.c_str(), &space) == 0 &&
                        static_cast<int64_t>(space.f_bavail) * static_cast<int64_t>(space.f_frsize) < (256 << 10);
      drop_staging();
      // curl's "Failure writing output" (error 23) is a full disk too: git deletes the object it
      // could not finish, so the tmpfs may have room again by the time it is read.
      if (full || output.find("No space left on device") != std::string::npos ||
          output.find("Failure writing output") != std::string::npos) {
        return "RepositoryTooLarge: the clone of " + repo.repository() + " for volume '" + volume.name() +
               "' is larger than " + std::to_string(options.git_max_bytes >> 20) + " MiB";
      }
      if (status == 124 || status == 137) {
        return "RepositoryTimeout: the clone of " + repo.repository() + " for volume '" + volume.name() +
               "' took longer than " + std::to_string(options.git_timeout.count()) + " s";
      }
      return "VolumeFailed: git clone of " + repo.repository() + ": " + Trimmed(output);
    }
    if (ctx.ids) {  // the clone belongs to the group's root, as a file it wrote itself would
      UniqueFd clone = confine::OpenDirectory(staging);
      if (!clone.Valid() || !confine::ChownTreeAt(clone.Get(), ctx.ids->host_base, ctx.ids->host_base)) {
        std::string error = Errno("hand the clone to the group");
        drop_staging();
        return "VolumeFailed: " + error;
      }
    }
    if (::mount(staging.c_str(), confine::FdPath(dir.Get()).c_str(), nullptr, MS_MOVE, nullptr) != 0) {
      std::string error = Errno("move the clone into the volume");
      drop_staging();
      return "VolumeFailed: " + error;
    }
    ::rmdir(staging.c_str());
    dir = confine::OpenBeneath(volumes, volume.name(), O_RDONLY | O_DIRECTORY);  // the tmpfs now on top
    if (!dir.Valid()) return "VolumeFailed: " + Errno("reopen the gitRepo volume '" + volume.name() + "'");
  }
  if (repo.directory().empty() || repo.directory() == ".") {
    *path = target;
    return std::nullopt;
  }
  // The directory is resolved beneath the clone (a symlink committed in the repository must
  // not lead out) and bound on a path of the node's own, which the tenant cannot swap later.
  const std::string bound = volume_root + "/.bound/" + volume.name();
  if (!confine::IsMountPoint(bound)) {
    if (auto error = confine::BindBeneath(dir.Get(), repo.directory(), bound)) {
      return "InvalidVolume: the directory of gitRepo volume '" + volume.name() + "': " + *error;
    }
  }
  *path = bound;
  return std::nullopt;
}

}  // namespace

std::string ShareStoreKey(const std::string& subscription_id) {
  return "s-" + crypto::Sha256Hex("skiff-share-store:" + subscription_id).substr(0, 32);
}

std::optional<std::string> CheckGroupPaths(const std::string& group_id, const ci::ContainerGroup& group,
                                           const VolumeOptions& options) {
  if (!IsGroupId(group_id)) return "InvalidGroup: the group id '" + group_id + "' is not a valid id";
  const auto& props = group.properties();
  std::set<std::string> volumes;
  for (const auto& volume : props.volumes()) {
    if (!confine::IsAciName(volume.name())) return "InvalidVolume: the volume name '" + volume.name() + "' is invalid";
    volumes.insert(volume.name());
    if (volume.has_azure_file()) {
      if (!confine::IsStorageAccountName(volume.azure_file().storage_account_name())) {
        return "InvalidVolume: the storageAccountName of volume '" + volume.name() + "' is invalid";
      }
      if (!confine::IsShareName(volume.azure_file().share_name())) {
        return "InvalidVolume: the shareName of volume '" + volume.name() + "' is invalid";
      }
    }
    if (volume.has_git_repo()) {
      const auto& repo = volume.git_repo();
      if (auto why = confine::CheckGitRepository(repo.repository(), options.git_insecure_hosts)) {
        return "InvalidVolume: the repository of volume '" + volume.name() + "' " + *why;
      }
      if (auto why = confine::CheckRelativePath(repo.directory())) {
        return "InvalidVolume: the directory of gitRepo volume '" + volume.name() + "' " + *why;
      }
      if (!repo.revision().empty() && repo.revision().front() == '-') {
        return "InvalidVolume: the revision of gitRepo volume '" + volume.name() + "' is invalid";
      }
    }
    for (const auto& [file, content] : volume.secret()) {
      if (!confine::IsFileName(file)) {
        return "InvalidVolume: the secret volume '" + volume.name() + "' has an invalid file name";
      }
    }
  }
  for (const auto& container : props.containers()) {
    if (!confine::IsAciName(container.name())) return "InvalidGroup: the container name '" + container.name() + "' is invalid";
    if (auto error = CheckMounts(container.properties().volume_mounts(), volumes, container.name())) return error;
  }
  for (const auto& init : props.init_containers()) {
    if (!confine::IsAciName(init.name())) return "InvalidGroup: the container name '" + init.name() + "' is invalid";
    if (auto error = CheckMounts(init.properties().volume_mounts(), volumes, init.name())) return error;
  }
  return std::nullopt;
}

std::optional<std::string> WriteSecretVolume(const std::string& dir, const std::map<std::string, std::string>& files,
                                             const std::optional<confine::IdRange>& owner) {
  UniqueFd root = confine::OpenDirectory(dir);
  if (!root.Valid()) return Errno("cannot open " + dir);
  ::fchmod(root.Get(), 0700);
  for (const auto& [name, content] : files) {
    if (!confine::IsFileName(name)) return "invalid secret file name '" + name + "'";
    auto decoded = crypto::Base64Decode(content);
    if (!decoded) return "secret file '" + name + "' is not base64";
    ::unlinkat(root.Get(), name.c_str(), 0);  // written again after a node restart
    UniqueFd file(::openat(root.Get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400));
    if (!file.Valid()) return Errno("cannot write secret file '" + name + "'");
    if (::write(file.Get(), decoded->data(), decoded->size()) != static_cast<ssize_t>(decoded->size())) {
      return Errno("cannot write secret file '" + name + "'");
    }
    if (owner && ::fchown(file.Get(), owner->host_base, owner->host_base) != 0) {
      return Errno("cannot hand secret file '" + name + "' to the group");
    }
  }
  ::fchmod(root.Get(), 0500);
  if (owner && ::fchown(root.Get(), owner->host_base, owner->host_base) != 0) {
    return Errno("cannot hand the secret volume to the group");
  }
  return std::nullopt;
}

std::optional<std::string> PrepareVolumes(const ci::ContainerGroup& group, const VolumeContext& ctx,
                                          const VolumeOptions& options, const SecretOpener& open_secret,
                                          std::map<std::string, std::string>* paths) {
  std::error_code ec;
  fs::create_directories(ctx.volume_root, ec);
  // As /proc/self/mountinfo spells it, so that a later node process finds the mounts it made.
  const std::string volume_root = fs::canonical(ctx.volume_root, ec).string();
  UniqueFd volumes = confine::OpenDirectory(volume_root);
  if (ec || !volumes.Valid()) return "VolumeFailed: " + Errno("cannot open " + ctx.volume_root);
  for (const auto& volume : group.properties().volumes()) {
    const std::string path = volume_root + "/" + volume.name();
    std::string source = path;
    if (volume.has_empty_dir()) {
      UniqueFd dir = confine::MakeDirectoriesBeneath(volumes.Get(), volume.name(), 0777);
      if (!dir.Valid()) return "VolumeFailed: " + Errno("cannot create the emptyDir volume '" + volume.name() + "'");
      if (options.empty_dir_max_bytes > 0) {
        if (auto error = MountTmpfs(dir.Get(), path, options.empty_dir_max_bytes, ",mode=0777")) {
          return "VolumeFailed: " + *error;
        }
        dir = confine::OpenBeneath(volumes.Get(), volume.name(), O_RDONLY | O_DIRECTORY);  // the tmpfs
      }
      if (ctx.ids && (!dir.Valid() || ::fchown(dir.Get(), ctx.ids->host_base, ctx.ids->host_base) != 0)) {
        return "VolumeFailed: " + Errno("cannot hand the emptyDir volume '" + volume.name() + "' to the group");
      }
    } else if (volume.secret_size() > 0) {
      if (auto error = PrepareSecret(volumes.Get(), volume, path, open_secret, ctx)) return error;
    } else if (volume.has_git_repo()) {
      if (auto error = PrepareRepository(volumes.Get(), volume, volume_root, ctx, options, &source)) return error;
    } else if (volume.has_azure_file()) {
      if (auto error = PrepareShare(volume.azure_file(), volume.name(), ctx, options, open_secret, &source)) return error;
    } else {
      return "InvalidVolume: the volume '" + volume.name() + "' has no kind this node knows";
    }
    (*paths)[volume.name()] = source;
  }
  return std::nullopt;
}

}  // namespace skiff::node
