// skiff-imagecache: one per node. Pulls and caches OCI images and lends root filesystems,
// answering requests over NATS; the logic lives in imagecache_core.
#include <CLI/CLI.hpp>
#include <google/protobuf/util/time_util.h>
#include <unistd.h>

#include <iostream>

#include "skiff/bus/bus_config.h"
#include "skiff/bus/nats_bus.h"
#include "skiff/bus/subjects.h"
#include "skiff/config/config.h"
#include "skiff/crypto/crypto.h"
#include "skiff/secrets/group_secrets.h"
#include "skiff/imagecache/image_cache.h"
#include "skiff/lifecycle/termination_signals.h"
#include "skiff/log/log.h"
#include "skiff/metrics/metrics.h"

namespace {

using namespace skiff;
namespace v1 = imagecache::v1;

// Publishes image events on JetStream (skiff.events.image.<kind>).
class NatsEventSink : public imagecache::ImageEventSink {
 public:
  NatsEventSink(bus::NatsBus& bus, std::string node_id) : bus_(bus), node_id_(std::move(node_id)) {}
  void Publish(const v1::ImageEvent& event) override {
    std::string kind = event.has_pulling() ? "pulling" : event.has_pulled() ? "pulled" : "failed";
    auto result = bus_.Publish(subjects::NodeEvent("image", kind, node_id_), event.event_id(), event.SerializeAsString());
    if (!result.ok) spdlog::warn("image event not published: {}", result.error);
  }

 private:
  bus::NatsBus& bus_;
  std::string node_id_;
};

class LogEventSink : public imagecache::ImageEventSink {
 public:
  void Publish(const v1::ImageEvent& event) override {
    if (event.has_pulling()) {
      spdlog::info("pulling {}: {}/{} bytes", event.image(), event.pulling().bytes_done(), event.pulling().bytes_total());
    } else if (event.has_failed()) {
      spdlog::warn("failed {}: {} {}", event.image(), event.failed().code(), event.failed().reason());
    }
  }
};

imagecache::ImageCacheOptions CacheOptions(const config::Config& cfg) {
  imagecache::ImageCacheOptions options;
  options.root = cfg.GetString("imagecache.root", "/var/lib/skiff/imagecache");
  options.max_cache_bytes = static_cast<int64_t>(cfg.GetDouble("imagecache.max_cache_gb", 50) * (1LL << 30));
  options.max_image_bytes = static_cast<int64_t>(cfg.GetDouble("imagecache.max_image_gb", 15) * (1LL << 30));
  options.writable_layer_max_bytes = cfg.GetInt("imagecache.writable_layer_max_mb", 1024) << 20;
  options.parallel_layers = static_cast<int>(cfg.GetInt("imagecache.parallel_layers", 4));
  return options;
}

imagecache::RegistryClientOptions RegistryOptions(const config::Config& cfg) {
  imagecache::RegistryClientOptions options;
  for (const auto& host : cfg.GetList("imagecache.insecure_registries", {})) options.insecure_registries.insert(host);
  return options;
}

std::string NodeId(const config::Config& cfg) {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return cfg.GetString("imagecache.node_id", host);
}

imagecache::ImageCache::CredentialOpener SecretOpener(const config::Config& cfg) {
  auto key = cfg.Find("imagecache.secret_key");
  std::shared_ptr<crypto::SecretBox> box;
  if (key && !key->empty()) {
    box = std::make_shared<crypto::SecretBox>(
        crypto::SecretBox::FromBase64Keys(*key, cfg.GetString("imagecache.old_secret_keys", "")));
  }
  return [open = secrets::MakeOpener(box)](const std::string& value, const std::string& context) {
    return open(value, context).value_or("");
  };
}

template <typename Request>
bool ParseRequest(const std::string& data, Request* request) {
  return request->ParseFromString(data);
}

int Serve(const config::Config& cfg) {
  lifecycle::TerminationSignals termination;  // before any thread starts

  const std::string node_id = NodeId(cfg);
  bus::NatsBus bus(bus::ConnectOptionsFrom(cfg, "skiff-imagecache-" + node_id));
  bus.EnsureStream({"SKIFF_EVENTS", {"skiff.events.>"}, std::chrono::seconds(120), true});
  NatsEventSink events(bus, node_id);
  imagecache::BeastHttpClient http(cfg.GetString("imagecache.ca_file", ""));
  imagecache::RegistryClient registry(http, RegistryOptions(cfg));
  auto options = CacheOptions(cfg);
  imagecache::BlobStore blobs(options.root);
  imagecache::ImageCache cache(registry, blobs, options, events, node_id, [] { return std::chrono::system_clock::now(); },
                               SecretOpener(cfg));
  imagecache::OverlayMounter mounter;

  auto& metrics_registry = metrics::DefaultRegistry();
  metrics::MetricsServer metrics_server(cfg.GetString("metrics.listen", "127.0.0.1:9103"), metrics_registry);
  if (!metrics_server.error().empty()) spdlog::warn("no /metrics: {}", metrics_server.error());
  metrics_registry.AddCollector([&cache](std::vector<metrics::Registry::Sample>& out) {
    double bytes = 0;
    const auto images = cache.List();
    for (const auto& image : images) bytes += static_cast<double>(image.size_bytes());
    out.push_back({"skiff_imagecache_images", "Images in the cache.", "gauge", {}, static_cast<double>(images.size())});
    out.push_back({"skiff_imagecache_bytes", "Bytes the cached images take.", "gauge", {}, bytes});
  });

  const std::string prefix = "skiff.imagecache." + node_id + ".";
  auto handler = [&](const std::string& subject, const std::string& data) -> std::optional<std::string> {
    const std::string verb = subject.substr(subject.rfind('.') + 1);
    if (verb == "ensure") {
      v1::EnsureImageRequest request;
      if (!request.ParseFromString(data)) {
        v1::EnsureImageReply reply;
        reply.set_error_code("InvalidRequest");
        reply.set_error_message("The ensure request does not parse.");
        return reply.SerializeAsString();
      }
      const auto started = std::chrono::steady_clock::now();
      auto reply = cache.Ensure(request);
      const std::string result = !reply.ok() ? "failed" : reply.cache_hit() ? "hit" : "pulled";
      metrics_registry.GetCounter("skiff_imagecache_ensures_total", "Image ensures, by result (hit, pulled, failed).",
                          {{"result", result}}).Add();
      metrics_registry.GetHistogram("skiff_imagecache_ensure_seconds", "Time to ensure an image is cached, by result.",
                            {{"result", result}}).Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      if (reply.ok() && !reply.cache_hit()) {
        auto evicted = cache.CollectGarbage();
        if (!evicted.empty()) spdlog::info("imagecache: evicted {} images", evicted.size());
      }
      return reply.SerializeAsString();
    }
    if (verb == "release") {
      v1::ReleaseImageRequest request;
      v1::ReleaseImageReply reply;
      reply.set_ok(request.ParseFromString(data) && cache.Release(request.image(), request.holder()));
      return reply.SerializeAsString();
    }
    if (verb == "list") {
      v1::ListImagesReply reply;
      for (auto& image : cache.List()) *reply.add_images() = image;
      return reply.SerializeAsString();
    }
    if (verb == "mount" || verb == "unmount") {
      v1::MountRootfsRequest request;
      v1::MountRootfsReply reply;
      if (!request.ParseFromString(data)) {
        reply.set_error_code("InvalidRequest");
        return reply.SerializeAsString();
      }
      if (verb == "mount") {
        std::optional<confine::IdRange> ids;
        if (request.id_map_size() > 0) ids = confine::IdRange{request.id_map_base(), request.id_map_size()};
        auto result = cache.MountRootfs(request.image(), request.container_id(), mounter, ids);
        if (auto* error = imagecache::ErrorOf(result)) {
          reply.set_error_code(error->code);
          reply.set_error_message(error->message);
        } else {
          reply.set_ok(true);
          reply.set_rootfs(std::get<std::string>(result));
        }
      } else if (auto error = cache.UnmountRootfs(request.container_id(), mounter)) {
        reply.set_error_code(error->code);
        reply.set_error_message(error->message);
      } else {
        reply.set_ok(true);
      }
      return reply.SerializeAsString();
    }
    return {};
  };
  auto node_server = bus.Serve(prefix + "*", "imagecache-" + node_id, handler,
                               static_cast<int>(cfg.GetInt("imagecache.workers", 8)));
  auto list_server = bus.Serve("skiff.imagecache.list", "imagecache-list", handler, 1);

  // Pre-pull the configured common images (ACI keeps common base images cached).
  std::thread prepull([&] {
    for (const auto& image : cfg.GetList("imagecache.prepull", {})) {
      v1::EnsureImageRequest request;
      request.set_image(image);
      request.set_causation_id("prepull");
      auto reply = cache.Ensure(request);
      if (reply.ok()) spdlog::info("pre-pulled {}", image);
    }
  });
  spdlog::info("imagecache {} serving {}*", node_id, prefix);

  int signal = termination.Wait();
  spdlog::info("signal {}: shutting down", signal);
  prepull.join();
  node_server.reset();
  list_server.reset();
  bus.Drain(std::chrono::seconds(5));
  return 0;
}

// One pull without NATS, for benchmarks and debugging: prints the cold time and the latency of
// warm (cached) ensures.
int PullOnce(const config::Config& cfg, const std::string& image, int warm_rounds) {
  LogEventSink events;
  imagecache::BeastHttpClient http(cfg.GetString("imagecache.ca_file", ""));
  imagecache::RegistryClient registry(http, RegistryOptions(cfg));
  auto options = CacheOptions(cfg);
  imagecache::BlobStore blobs(options.root);
  imagecache::ImageCache cache(registry, blobs, options, events, NodeId(cfg),
                               [] { return std::chrono::system_clock::now(); }, SecretOpener(cfg));
  v1::EnsureImageRequest request;
  request.set_image(image);
  auto start = std::chrono::steady_clock::now();
  auto reply = cache.Ensure(request);
  double cold = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!reply.ok()) {
    std::cerr << reply.error_code() << ": " << reply.error_message() << "\n";
    return 1;
  }
  std::vector<double> warm;
  for (int i = 0; i < warm_rounds; ++i) {
    auto t = std::chrono::steady_clock::now();
    auto again = cache.Ensure(request);
    warm.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
    if (!again.cache_hit()) return 1;
  }
  std::sort(warm.begin(), warm.end());
  std::cout << "pulled " << reply.image().reference() << " " << reply.image().manifest_digest() << " layers "
            << reply.image().layer_dirs_size() << " bytes " << reply.image().size_bytes() << "\n";
  std::cout << "cold_seconds " << cold << "\n";
  if (!warm.empty()) {
    std::cout << "warm_ms_p50 " << warm[warm.size() / 2] << " warm_ms_p99 " << warm[warm.size() * 99 / 100] << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"skiff-imagecache: pulls, caches and lends OCI images on a node"};
  std::string config_file;
  app.add_option("-c,--config", config_file, "INI config file (SKIFF_* environment variables override it)");
  app.require_subcommand(0, 1);
  app.add_subcommand("serve", "Serve requests over NATS (the default)");
  auto* pull = app.add_subcommand("pull", "Pull one image into the cache without NATS and report timings");
  std::string image;
  int warm_rounds = 1000;
  pull->add_option("image", image, "Image reference")->required();
  pull->add_option("--warm-rounds", warm_rounds, "Cached ensures to time after the pull");
  CLI11_PARSE(app, argc, argv);
  try {
    config::Config cfg = config_file.empty() ? config::Config() : config::Config::FromFile(config_file);
    log::Init("imagecache", cfg.GetString("log.level", "info"));
    if (pull->parsed()) return PullOnce(cfg, image, warm_rounds);
    return Serve(cfg);
  } catch (const std::exception& e) {
    std::cerr << "skiff-imagecache: " << e.what() << "\n";
    return 1;
  }
}
