#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "skiff/confine/idmap.h"
#include "skiff/imagecache/blob_store.h"
#include "skiff/imagecache/layer_unpacker.h"
#include "skiff/imagecache/registry_client.h"
#include "skiff/imagecache/single_flight.h"
#include "skiff/imagecache/v1/imagecache.pb.h"

namespace skiff::imagecache {

struct ImageCacheOptions {
  std::string root;                              // holds blobs/, layers/, images/
  int64_t max_cache_bytes = 50LL << 30;          // GC threshold (compressed blobs + unpacked layers)
  int64_t max_image_bytes = 15LL << 30;          // ACI's limit, checked before any layer is fetched
  int parallel_layers = 4;
  std::string os = "linux";
  std::string architecture = "amd64";
  UnpackLimits unpack;
  std::chrono::milliseconds progress_interval{500};
  // A container's writable layer (its overlay's upper directory) is a tmpfs of this size, as in
  // Cloud Run: what the container writes to its root file system counts against its memory and
  // can never fill the node's disk. 0: on the cache's disk, unbounded.
  int64_t writable_layer_max_bytes = 1LL << 30;
};

// Where pull progress goes (NATS events in the service; a recorder in tests).
class ImageEventSink {
 public:
  virtual ~ImageEventSink() = default;
  virtual void Publish(const v1::ImageEvent& event) = 0;
};

// Mounts a container's root filesystem: overlayfs with the image's layers as lowerdirs.
class RootfsMounter {
 public:
  virtual ~RootfsMounter() = default;
  // lower_dirs: top-most layer first, as overlayfs wants them. With `ids`, each layer is seen
  // through an idmapped mount (under `target`/../lower) shifted into that range, and the upper
  // directory belongs to the range's root, so the container's root owns its root filesystem
  // and nothing of the host.
  virtual std::optional<std::string> Mount(const std::vector<std::string>& lower_dirs, const std::string& upper,
                                           const std::string& work, const std::string& target,
                                           const std::optional<confine::IdRange>& ids) = 0;
  virtual std::optional<std::string> Unmount(const std::string& target) = 0;
  virtual bool IsMounted(const std::string& target) = 0;
  // A size-capped tmpfs on the directory `dir` for the writable layer (Unmount of the rootfs
  // beside it detaches it too).
  virtual std::optional<std::string> MountWritableLayer(const std::string& dir, int64_t max_bytes) = 0;
};

class OverlayMounter : public RootfsMounter {
 public:
  std::optional<std::string> Mount(const std::vector<std::string>& lower_dirs, const std::string& upper,
                                   const std::string& work, const std::string& target,
                                   const std::optional<confine::IdRange>& ids) override;
  std::optional<std::string> Unmount(const std::string& target) override;
  bool IsMounted(const std::string& target) override;
  std::optional<std::string> MountWritableLayer(const std::string& dir, int64_t max_bytes) override;
};

// The image cache of one node: ensures images are present (pulling once per image however many
// ask at the same time), keeps them by digest, lends root filesystems, and evicts unheld images
// least-recently-used when the cache grows past its limit. Thread-safe.
class ImageCache {
 public:
  using Now = std::function<std::chrono::system_clock::time_point()>;
  // (value, the context it is bound to) -> plain text; "" when it does not open.
  using CredentialOpener = std::function<std::string(const std::string& maybe_sealed, const std::string& context)>;

  ImageCache(RegistryClient& registry, BlobStore& blobs, ImageCacheOptions options, ImageEventSink& events,
             std::string node_id, Now now, CredentialOpener open_secret);

  v1::EnsureImageReply Ensure(const v1::EnsureImageRequest& request);
  bool Release(const std::string& image, const std::string& holder);
  std::vector<v1::CachedImage> List();
  // Evicts least-recently-used images nobody holds until usage <= max_cache_bytes.
  // Returns the manifest digests evicted, oldest first.
  std::vector<std::string> CollectGarbage();
  int64_t UsageBytes();

  // Root filesystem for a container: <root>/containers/<id>/{upper,work,rootfs} (upper and work
  // in layer/, the capped tmpfs, when writable_layer_max_bytes is set; lower/<n>, the idmapped
  // layers, with `ids`).
  PullResult<std::string> MountRootfs(const std::string& image, const std::string& container_id, RootfsMounter& mounter,
                                      const std::optional<confine::IdRange>& ids = std::nullopt);
  std::optional<PullError> UnmountRootfs(const std::string& container_id, RootfsMounter& mounter);

  std::string LayerDir(const std::string& digest) const;

 private:
  PullResult<v1::ImageRecord> Pull(const oci::ImageReference& ref, const Credential* credential,
                                   const std::string& causation_id);
  std::optional<PullError> EnsureLayer(const oci::ImageReference& ref, const Credential* credential,
                                       const v1::Descriptor& layer, int64_t* unpacked_bytes,
                                       const std::function<void(int64_t)>& progress);
  v1::ImageInfo InfoOf(const v1::ImageRecord& record, const std::string& reference) const;
  void SaveRecord(const v1::ImageRecord& record);
  void LoadRecords();
  std::optional<v1::ImageRecord> FindLocked(const oci::ImageReference& ref);
  void Emit(const std::string& image, const std::string& causation_id, const std::function<void(v1::ImageEvent&)>& fill);
  int64_t UsageLocked() const;

  RegistryClient& registry_;
  BlobStore& blobs_;
  ImageCacheOptions options_;
  ImageEventSink& events_;
  std::string node_id_;
  Now now_;
  CredentialOpener open_secret_;

  std::mutex mutex_;
  std::map<std::string, v1::ImageRecord> images_;  // by manifest digest
  std::map<std::string, std::string> tags_;        // normalised reference -> manifest digest
  SingleFlight<std::string, PullResult<v1::ImageRecord>> image_flights_;
  SingleFlight<std::string, std::optional<PullError>> layer_flights_;
  std::mutex layer_sizes_mutex_;
};

}  // namespace skiff::imagecache
