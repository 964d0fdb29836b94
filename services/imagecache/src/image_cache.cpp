#include "skiff/imagecache/image_cache.h"

#include "skiff/confine/mounts.h"

#include <google/protobuf/util/time_util.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "skiff/crypto/crypto.h"
#include "skiff/imagecache/manifest.h"
#include "skiff/log/log.h"

namespace skiff::imagecache {
namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

namespace {

google::protobuf::Timestamp ToTimestamp(std::chrono::system_clock::time_point time) {
  return TimeUtil::MillisecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count());
}

bool IsSafeId(const std::string& id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; });
}

std::string Hex(const std::string& digest) { return digest.substr(7); }

}  // namespace

namespace {

std::string IdmappedLayersDir(const std::string& target) { return fs::path(target).parent_path().string() + "/lower"; }

}  // namespace

std::optional<std::string> OverlayMounter::Mount(const std::vector<std::string>& lower_dirs, const std::string& upper,
                                                 const std::string& work, const std::string& target,
                                                 const std::optional<confine::IdRange>& ids) {
  std::vector<std::string> layers = lower_dirs;
  if (ids) {
    const std::string mapped = IdmappedLayersDir(target);
    confine::UnmountBeneath(mapped);  // a half-made earlier try
    std::error_code ec;
    fs::remove_all(mapped, ec);
    fs::create_directory(mapped, ec);
    fs::permissions(mapped, fs::perms::owner_all, fs::perm_options::replace, ec);  // no way in for the host's users
    for (size_t i = 0; i < lower_dirs.size(); ++i) {
      layers[i] = mapped + "/" + std::to_string(i);
      fs::create_directory(layers[i], ec);
      if (auto error = confine::BindIdmapped(lower_dirs[i], *ids, layers[i], false)) {
        confine::UnmountBeneath(mapped);
        return error;
      }
    }
    // The root directory of the container's file system is its root's, as on a plain host.
    if (::lchown(upper.c_str(), ids->host_base, ids->host_base) != 0) {
      confine::UnmountBeneath(mapped);
      return "chown " + upper + ": " + std::strerror(errno);
    }
  }
  std::string lower;
  for (const auto& dir : layers) lower += (lower.empty() ? "" : ":") + dir;
  std::string options = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
  if (::mount("overlay", target.c_str(), "overlay", 0, options.c_str()) != 0) {
    const std::string error = std::string("mount overlay at ") + target + ": " + std::strerror(errno);
    if (ids) confine::UnmountBeneath(IdmappedLayersDir(target));
    return error;
  }
  return std::nullopt;
}

bool OverlayMounter::IsMounted(const std::string& target) {
  struct stat here {}, parent {};
  if (::stat(target.c_str(), &here) != 0 || ::stat((target + "/..").c_str(), &parent) != 0) return false;
  return here.st_dev != parent.st_dev;
}

std::optional<std::string> OverlayMounter::Unmount(const std::string& target) {
  if (::umount2(target.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return std::string("unmount ") + target + ": " + std::strerror(errno);
  }
  // Then what the overlay stood on: idmapped layers and the writable layer's tmpfs.
  std::error_code ec;
  const fs::path base = fs::path(target).parent_path();
  if (fs::exists(base, ec)) confine::UnmountBeneath(fs::canonical(base, ec).string());
  return std::nullopt;
}

std::optional<std::string> OverlayMounter::MountWritableLayer(const std::string& dir, int64_t max_bytes) {
  std::error_code ec;
  if (confine::IsMountPoint(fs::weakly_canonical(dir, ec).string())) return std::nullopt;  // a node restart
  const std::string data = "size=" + std::to_string(max_bytes) + ",mode=0755";
  if (::mount("skiff-writable-layer", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, data.c_str()) != 0) {
    return "mount the writable layer at " + dir + ": " + std::strerror(errno);
  }
  return std::nullopt;
}

ImageCache::ImageCache(RegistryClient& registry, BlobStore& blobs, ImageCacheOptions options, ImageEventSink& events,
                       std::string node_id, Now now, CredentialOpener open_secret)
    : registry_(registry), blobs_(blobs), options_(std::move(options)), events_(events), node_id_(std::move(node_id)),
      now_(std::move(now)), open_secret_(std::move(open_secret)) {
  fs::create_directories(options_.root + "/layers");
  fs::create_directories(options_.root + "/images");
  fs::create_directories(options_.root + "/containers");
  // Layers keep their setuid files and owners: only root may enter them (and the records).
  // The root and containers/ may be passed through (0711), on the way to a container's rootfs.
  const auto traverse_only = fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec;
  fs::permissions(options_.root, traverse_only, fs::perm_options::replace);
  fs::permissions(options_.root + "/containers", traverse_only, fs::perm_options::replace);
  fs::permissions(options_.root + "/layers", fs::perms::owner_all, fs::perm_options::replace);
  fs::permissions(options_.root + "/images", fs::perms::owner_all, fs::perm_options::replace);
  // Half-unpacked layers of an earlier run are discarded.
  for (const auto& entry : fs::directory_iterator(options_.root + "/layers")) {
    if (entry.path().filename().string().find(".tmp-") != std::string::npos) fs::remove_all(entry.path());
  }
  LoadRecords();
}

std::string ImageCache::LayerDir(const std::string& digest) const { return options_.root + "/layers/" + Hex(digest); }

void ImageCache::LoadRecords() {
  std::lock_guard lock(mutex_);
  for (const auto& entry : fs::directory_iterator(options_.root + "/images")) {
    if (entry.path().extension() != ".pb") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    v1::ImageRecord record;
    if (!record.ParseFromIstream(&in)) {
      spdlog::warn("imagecache: dropping unreadable record {}", entry.path().string());
      fs::remove(entry.path());
      continue;
    }
    bool complete = std::all_of(record.layers().begin(), record.layers().end(),
                                [&](const v1::Descriptor& layer) { return fs::exists(LayerDir(layer.digest())); });
    if (!complete) {
      spdlog::warn("imagecache: record {} misses layers; it will be pulled again", record.manifest_digest());
      fs::remove(entry.path());
      continue;
    }
    for (const auto& reference : record.references()) tags_[reference] = record.manifest_digest();
    images_[record.manifest_digest()] = record;
  }
}

void ImageCache::SaveRecord(const v1::ImageRecord& record) {
  std::string path = options_.root + "/images/" + Hex(record.manifest_digest()) + ".pb";
  std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    record.SerializeToOstream(&out);
  }
  fs::rename(temp, path);
}

void ImageCache::Emit(const std::string& image, const std::string& causation_id,
                      const std::function<void(v1::ImageEvent&)>& fill) {
  v1::ImageEvent event;
  event.set_event_id(crypto::NewUuid());
  *event.mutable_occurred_at() = ToTimestamp(now_());
  event.set_causation_id(causation_id);
  event.set_node_id(node_id_);
  event.set_image(image);
  fill(event);
  events_.Publish(event);
}

std::optional<v1::ImageRecord> ImageCache::FindLocked(const oci::ImageReference& ref) {
  if (!ref.digest.empty()) {
    auto it = images_.find(ref.digest);
    if (it != images_.end()) return it->second;
  }
  auto tag = tags_.find(ref.String());
  if (tag != tags_.end()) {
    auto it = images_.find(tag->second);
    if (it != images_.end()) return it->second;
  }
  return std::nullopt;
}

v1::ImageInfo ImageCache::InfoOf(const v1::ImageRecord& record, const std::string& reference) const {
  v1::ImageInfo info;
  info.set_reference(reference);
  info.set_manifest_digest(record.manifest_digest());
  info.set_config_digest(record.config_digest());
  *info.mutable_config() = record.config();
  for (const auto& layer : record.layers()) info.add_layer_dirs(LayerDir(layer.digest()));
  info.set_size_bytes(record.size_bytes());
  info.set_unpacked_bytes(record.unpacked_bytes());
  return info;
}

v1::EnsureImageReply ImageCache::Ensure(const v1::EnsureImageRequest& request) {
  v1::EnsureImageReply reply;
  auto fail = [&](const PullError& error) {
    reply.set_ok(false);
    reply.set_error_code(error.code);
    reply.set_error_message(error.message);
    Emit(request.image(), request.causation_id(), [&](v1::ImageEvent& e) {
      e.mutable_failed()->set_code(error.code);
      e.mutable_failed()->set_reason(error.message);
    });
    return reply;
  };
  auto ref = oci::ParseImageReference(request.image());
  if (!ref) return fail({"InvalidImageReference", "The image name '" + request.image() + "' is not a valid reference."});
  const std::string normalised = ref->String();
  const auto started = std::chrono::steady_clock::now();

  {
    std::unique_lock lock(mutex_);
    if (auto cached = FindLocked(*ref)) {
      // A cached image needs no network at all (tags are not re-resolved: pin a digest to update).
      v1::ImageRecord& record = images_[cached->manifest_digest()];
      *record.mutable_last_used() = ToTimestamp(now_());
      if (!request.holder().empty() &&
          std::find(record.holders().begin(), record.holders().end(), request.holder()) == record.holders().end()) {
        record.add_holders(request.holder());
      }
      SaveRecord(record);
      reply.set_ok(true);
      reply.set_cache_hit(true);
      *reply.mutable_image() = InfoOf(record, normalised);
      lock.unlock();  // events go out without holding up other ensures
      Emit(request.image(), request.causation_id(), [&](v1::ImageEvent& e) {
        e.mutable_pulled()->set_manifest_digest(reply.image().manifest_digest());
        e.mutable_pulled()->set_size_bytes(reply.image().size_bytes());
        e.mutable_pulled()->set_cache_hit(true);
      });
      return reply;
    }
  }

  Credential credential;
  const Credential* credential_ptr = nullptr;
  for (const auto& cred : request.credentials()) {
    if (cred.server() == ref->registry || (ref->registry == "docker.io" && cred.server() == "index.docker.io")) {
      credential.username = cred.username();
      credential.password = open_secret_(cred.password(), cred.password_context());
      credential_ptr = &credential;
    }
  }
  bool shared = false;
  auto result = image_flights_.Do(
      normalised, [&] { return Pull(*ref, credential_ptr, request.causation_id()); }, &shared);
  if (auto* error = ErrorOf(result)) return fail(*error);
  {
    std::lock_guard lock(mutex_);
    v1::ImageRecord& record = images_[std::get<v1::ImageRecord>(result).manifest_digest()];
    if (!request.holder().empty() &&
        std::find(record.holders().begin(), record.holders().end(), request.holder()) == record.holders().end()) {
      record.add_holders(request.holder());
    }
    *record.mutable_last_used() = ToTimestamp(now_());
    SaveRecord(record);
    reply.set_ok(true);
    reply.set_cache_hit(shared);
    *reply.mutable_image() = InfoOf(record, normalised);
  }
  if (!shared) {
    const v1::ImageInfo& record = reply.image();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    Emit(request.image(), request.causation_id(), [&](v1::ImageEvent& e) {
      e.mutable_pulled()->set_manifest_digest(record.manifest_digest());
      e.mutable_pulled()->set_size_bytes(record.size_bytes());
      e.mutable_pulled()->set_seconds(seconds);
    });
  }
  return reply;
}

std::optional<PullError> ImageCache::EnsureLayer(const oci::ImageReference& ref, const Credential* credential,
                                                 const v1::Descriptor& layer, int64_t* unpacked_bytes,
                                                 const std::function<void(int64_t)>& progress) {
  const std::string dir = LayerDir(layer.digest());
  return layer_flights_.Do(layer.digest(), [&]() -> std::optional<PullError> {
    if (fs::exists(dir)) {
      progress(layer.size());
      return std::nullopt;
    }
    if (!blobs_.Has(layer.digest())) {
      auto writer = blobs_.Begin(layer.digest());
      if (!writer) return PullError{"CacheIoError", "Cannot write to the image cache."};
      bool write_failed = false;
      auto error = registry_.FetchBlob(
          ref, layer.digest(), layer.size(), credential,
          [&](const char* data, size_t n) {
            if (!writer->Write(data, n)) {
              write_failed = true;
              return false;
            }
            progress(static_cast<int64_t>(n));
            return true;
          },
          [&] { writer->Restart(); });
      if (write_failed) return PullError{"CacheIoError", "Cannot write to the image cache (disk full?)."};
      if (error) return error;
      if (auto commit_error = writer->Commit()) return commit_error;
    } else {
      progress(layer.size());
    }
    auto unpacked = UnpackLayer(blobs_.PathOf(layer.digest()), dir, options_.unpack);
    if (auto* error = ErrorOf(unpacked)) {
      // Keep the cache consistent: a blob that does not unpack is not kept either.
      blobs_.Remove(layer.digest());
      return *error;
    }
    *unpacked_bytes = std::get<UnpackStats>(unpacked).bytes;
    return std::nullopt;
  });
}

PullResult<v1::ImageRecord> ImageCache::Pull(const oci::ImageReference& ref, const Credential* credential,
                                             const std::string& causation_id) {
  const std::string image = ref.String();
  auto fetched = registry_.GetManifest(ref, ref.ManifestReference(), credential);
  if (auto* error = ErrorOf(fetched)) return *error;
  FetchedManifest manifest_doc = std::get<FetchedManifest>(fetched);
  DocumentKind kind = KindOf(manifest_doc.media_type, manifest_doc.body);
  if (kind == DocumentKind::kIndex) {
    auto index = ParseIndex(manifest_doc.body);
    if (auto* error = ErrorOf(index)) return *error;
    auto chosen = SelectPlatform(std::get<v1::Index>(index), options_.os, options_.architecture);
    if (!chosen) {
      return PullError{"NoMatchingPlatform", "The image " + image + " has no variant for " + options_.os + "/" +
                                                 options_.architecture + "."};
    }
    fetched = registry_.GetManifest(ref, chosen->digest(), credential);
    if (auto* error = ErrorOf(fetched)) return *error;
    manifest_doc = std::get<FetchedManifest>(fetched);
    kind = KindOf(manifest_doc.media_type, manifest_doc.body);
  }
  if (kind != DocumentKind::kManifest) {
    return PullError{"UnsupportedManifest", "The image " + image + " has a manifest of unsupported type '" +
                                                manifest_doc.media_type + "' (Docker schema 1 is not supported)."};
  }
  auto parsed = ParseManifest(manifest_doc.body);
  if (auto* error = ErrorOf(parsed)) return *error;
  const v1::Manifest& manifest = std::get<v1::Manifest>(parsed);

  int64_t total = manifest.config().size();
  for (const auto& layer : manifest.layers()) {
    if (!IsSupportedLayerType(layer.media_type()) || layer.urls_size() > 0) {
      return PullError{"UnsupportedManifest", "The image " + image + " has a layer of unsupported type '" +
                                                  layer.media_type() + "'."};
    }
    if (!BlobStore::IsValidDigest(layer.digest()) || layer.size() < 0) {
      return PullError{"UnsupportedManifest", "The image " + image + " has a layer with an invalid digest or size."};
    }
    total += layer.size();
  }
  if (total > options_.max_image_bytes) {
    return PullError{"ImageTooLarge", "The image " + image + " is " + std::to_string(total >> 20) +
                                          " MiB; this deployment accepts images up to " +
                                          std::to_string(options_.max_image_bytes >> 20) + " MiB."};
  }
  if (!BlobStore::IsValidDigest(manifest.config().digest())) {
    return PullError{"UnsupportedManifest", "The image " + image + " has an invalid config digest."};
  }

  // Config: small, fetched into memory and checked.
  std::string config_body;
  if (auto cached = blobs_.Read(manifest.config().digest())) {
    config_body = *cached;
  } else {
    auto error = registry_.FetchBlob(
        ref, manifest.config().digest(), manifest.config().size(), credential,
        [&](const char* data, size_t n) {
          config_body.append(data, n);
          return config_body.size() <= 4 * 1024 * 1024;
        },
        [&] { config_body.clear(); });
    if (error) return *error;
    if (auto put_error = blobs_.Put(manifest.config().digest(), config_body)) return *put_error;
  }
  auto config = ParseImageConfig(config_body);
  if (auto* error = ErrorOf(config)) return *error;
  const v1::ImageConfig& image_config = std::get<v1::ImageConfig>(config);
  if (!image_config.os().empty() && image_config.os() != options_.os) {
    return PullError{"NoMatchingPlatform", "The image " + image + " is for " + image_config.os() + ", not " + options_.os + "."};
  }

  Emit(image, causation_id, [&](v1::ImageEvent& e) {
    e.mutable_pulling()->set_bytes_done(0);
    e.mutable_pulling()->set_bytes_total(total);
  });

  // Layers in parallel: download and unpack each as soon as it arrives.
  std::atomic<int64_t> done{manifest.config().size()};
  std::mutex progress_mutex;
  auto last_report = std::chrono::steady_clock::now();
  auto progress = [&](int64_t n) {
    int64_t now_done = done += n;
    std::lock_guard lock(progress_mutex);
    auto now = std::chrono::steady_clock::now();
    if (now - last_report < options_.progress_interval) return;
    last_report = now;
    Emit(image, causation_id, [&](v1::ImageEvent& e) {
      e.mutable_pulling()->set_bytes_done(now_done);
      e.mutable_pulling()->set_bytes_total(total);
    });
  };
  std::vector<std::optional<PullError>> errors(static_cast<size_t>(manifest.layers_size()));
  std::vector<int64_t> unpacked(static_cast<size_t>(manifest.layers_size()), -1);
  std::atomic<int> next{0};
  auto worker = [&] {
    for (int i = next++; i < manifest.layers_size(); i = next++) {
      errors[static_cast<size_t>(i)] =
          EnsureLayer(ref, credential, manifest.layers(i), &unpacked[static_cast<size_t>(i)], progress);
    }
  };
  std::vector<std::thread> workers;
  int parallel = std::max(1, std::min(options_.parallel_layers, manifest.layers_size()));
  for (int i = 1; i < parallel; ++i) workers.emplace_back(worker);
  worker();
  for (auto& t : workers) t.join();
  for (const auto& error : errors) {
    if (error) return *error;
  }
  if (auto put_error = blobs_.Put(manifest_doc.digest, manifest_doc.body)) return *put_error;

  std::lock_guard lock(mutex_);
  v1::ImageRecord record;
  if (auto existing = images_.find(manifest_doc.digest); existing != images_.end()) record = existing->second;
  record.set_manifest_digest(manifest_doc.digest);
  if (std::find(record.references().begin(), record.references().end(), image) == record.references().end()) {
    record.add_references(image);
  }
  record.set_config_digest(manifest.config().digest());
  *record.mutable_config() = image_config;
  record.mutable_layers()->CopyFrom(manifest.layers());
  record.set_size_bytes(total);
  int64_t unpacked_total = 0;
  for (int i = 0; i < manifest.layers_size(); ++i) {
    const std::string& digest = manifest.layers(i).digest();
    int64_t bytes = unpacked[static_cast<size_t>(i)];
    if (bytes < 0) {
      // Unpacked by an earlier pull: take its size from whichever record knows it.
      for (const auto& [_, other] : images_) {
        auto it = other.layer_unpacked_bytes().find(digest);
        if (it != other.layer_unpacked_bytes().end()) bytes = it->second;
      }
    }
    (*record.mutable_layer_unpacked_bytes())[digest] = std::max<int64_t>(bytes, 0);
    unpacked_total += std::max<int64_t>(bytes, 0);
  }
  record.set_unpacked_bytes(unpacked_total);
  *record.mutable_last_used() = ToTimestamp(now_());
  images_[record.manifest_digest()] = record;
  tags_[image] = record.manifest_digest();
  SaveRecord(record);
  return record;
}

bool ImageCache::Release(const std::string& image, const std::string& holder) {
  auto ref = oci::ParseImageReference(image);
  if (!ref) return false;
  std::lock_guard lock(mutex_);
  auto record = FindLocked(*ref);
  if (!record) return false;
  v1::ImageRecord& stored = images_[record->manifest_digest()];
  auto* holders = stored.mutable_holders();
  auto it = std::find(holders->begin(), holders->end(), holder);
  if (it == holders->end()) return false;
  holders->erase(it);
  SaveRecord(stored);
  return true;
}

std::vector<v1::CachedImage> ImageCache::List() {
  std::lock_guard lock(mutex_);
  std::vector<v1::CachedImage> out;
  for (const auto& [digest, record] : images_) {
    for (const auto& reference : record.references()) {
      v1::CachedImage image;
      image.set_reference(reference);
      image.set_manifest_digest(digest);
      image.set_size_bytes(record.size_bytes());
      *image.mutable_last_used() = record.last_used();
      image.set_holders(record.holders_size());
      image.set_os_type(record.config().os() == "windows" ? "Windows" : "Linux");
      out.push_back(image);
    }
  }
  return out;
}

int64_t ImageCache::UsageLocked() const {
  std::map<std::string, int64_t> layers;
  int64_t usage = 0;
  for (const auto& [digest, record] : images_) {
    for (const auto& layer : record.layers()) {
      auto unpacked = record.layer_unpacked_bytes().find(layer.digest());
      layers[layer.digest()] = layer.size() + (unpacked == record.layer_unpacked_bytes().end() ? 0 : unpacked->second);
    }
  }
  for (const auto& [_, bytes] : layers) usage += bytes;
  return usage;
}

int64_t ImageCache::UsageBytes() {
  std::lock_guard lock(mutex_);
  return UsageLocked();
}

std::vector<std::string> ImageCache::CollectGarbage() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> evicted;
  std::vector<const v1::ImageRecord*> candidates;
  for (const auto& [_, record] : images_) {
    if (record.holders_size() == 0) candidates.push_back(&record);
  }
  std::sort(candidates.begin(), candidates.end(), [](const v1::ImageRecord* a, const v1::ImageRecord* b) {
    return TimeUtil::TimestampToMilliseconds(a->last_used()) < TimeUtil::TimestampToMilliseconds(b->last_used());
  });
  std::vector<std::string> order;
  for (const auto* record : candidates) order.push_back(record->manifest_digest());
  for (const auto& digest : order) {
    if (UsageLocked() <= options_.max_cache_bytes) break;
    v1::ImageRecord record = images_[digest];
    images_.erase(digest);
    for (const auto& reference : record.references()) {
      if (tags_[reference] == digest) tags_.erase(reference);
    }
    fs::remove(options_.root + "/images/" + Hex(digest) + ".pb");
    blobs_.Remove(digest);
    // Layers and config shared with images still cached stay.
    std::set<std::string> still_used;
    for (const auto& [_, other] : images_) {
      still_used.insert(other.config_digest());
      for (const auto& layer : other.layers()) still_used.insert(layer.digest());
    }
    if (!still_used.count(record.config_digest())) blobs_.Remove(record.config_digest());
    for (const auto& layer : record.layers()) {
      if (still_used.count(layer.digest())) continue;
      blobs_.Remove(layer.digest());
      std::error_code ec;
      fs::remove_all(LayerDir(layer.digest()), ec);
    }
    spdlog::info("imagecache: evicted {} ({})", record.references_size() ? record.references(0) : digest, digest);
    evicted.push_back(digest);
  }
  return evicted;
}

PullResult<std::string> ImageCache::MountRootfs(const std::string& image, const std::string& container_id,
                                                RootfsMounter& mounter, const std::optional<confine::IdRange>& ids) {
  if (!IsSafeId(container_id)) return PullError{"InvalidRequest", "Invalid container id '" + container_id + "'."};
  auto ref = oci::ParseImageReference(image);
  if (!ref) return PullError{"InvalidImageReference", "The image name '" + image + "' is not a valid reference."};
  std::vector<std::string> lower;
  {
    std::lock_guard lock(mutex_);
    auto record = FindLocked(*ref);
    if (!record) return PullError{"ImageNotCached", "The image " + image + " is not in this node's cache; ensure it first."};
    for (int i = record->layers_size() - 1; i >= 0; --i) lower.push_back(LayerDir(record->layers(i).digest()));
  }
  if (lower.empty()) return PullError{"UnsupportedManifest", "The image " + image + " has no layers."};
  const std::string base = options_.root + "/containers/" + container_id;
  fs::create_directories(base + "/rootfs");
  // Traversable only (no listing): a user-namespaced container's root resolves its rootfs path
  // with no rights on the host; the layers beneath stay root's alone.
  std::error_code ignored;
  fs::permissions(base, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec,
                  fs::perm_options::replace, ignored);
  if (mounter.IsMounted(base + "/rootfs")) return base + "/rootfs";  // already lent (node restart)
  std::string writable = base;
  if (options_.writable_layer_max_bytes > 0) {
    writable = base + "/layer";
    fs::create_directories(writable);
    if (auto error = mounter.MountWritableLayer(writable, options_.writable_layer_max_bytes)) {
      return PullError{"CacheIoError", *error};
    }
  }
  fs::create_directories(writable + "/upper");
  fs::create_directories(writable + "/work");
  fs::permissions(writable + "/work", fs::perms::owner_all, fs::perm_options::replace, ignored);
  if (auto error = mounter.Mount(lower, writable + "/upper", writable + "/work", base + "/rootfs", ids)) {
    mounter.Unmount(base + "/rootfs");  // the writable layer's tmpfs goes with it
    return PullError{"CacheIoError", *error};
  }
  return base + "/rootfs";
}

std::optional<PullError> ImageCache::UnmountRootfs(const std::string& container_id, RootfsMounter& mounter) {
  if (!IsSafeId(container_id)) return PullError{"InvalidRequest", "Invalid container id '" + container_id + "'."};
  const std::string base = options_.root + "/containers/" + container_id;
  if (auto error = mounter.Unmount(base + "/rootfs")) return PullError{"CacheIoError", *error};
  std::error_code ec;
  // Never remove through a mount still attached: an idmapped layer is the cached layer itself.
  if (fs::exists(base, ec) && !confine::MountsBeneath(fs::canonical(base, ec).string()).empty()) {
    return PullError{"CacheIoError", "the root filesystem of " + container_id + " is still mounted"};
  }
  fs::remove_all(base, ec);
  return std::nullopt;
}

}  // namespace skiff::imagecache
