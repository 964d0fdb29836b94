#include "skiff/imagecache/image_cache.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "test_support.h"

namespace skiff::imagecache {
namespace {
namespace fs = std::filesystem;
using testing::DigestOf;
using testing::FakeRegistry;
using testing::MakeTar;

class RecordingSink : public ImageEventSink {
 public:
  void Publish(const v1::ImageEvent& event) override {
    std::lock_guard lock(mutex);
    events.push_back(event);
  }
  std::vector<std::string> Kinds() {
    std::lock_guard lock(mutex);
    std::vector<std::string> kinds;
    for (const auto& e : events) kinds.push_back(e.has_pulling() ? "pulling" : e.has_pulled() ? "pulled" : "failed");
    return kinds;
  }
  std::mutex mutex;
  std::vector<v1::ImageEvent> events;
};

class RecordingMounter : public RootfsMounter {
 public:
  std::optional<std::string> Mount(const std::vector<std::string>& lower, const std::string&, const std::string&,
                                   const std::string& target, const std::optional<confine::IdRange>& range) override {
    lower_dirs = lower;
    mounted = target;
    ids = range;
    return std::nullopt;
  }
  std::optional<std::string> Unmount(const std::string& target) override {
    unmounted = target;
    mounted.clear();
    return std::nullopt;
  }
  bool IsMounted(const std::string& target) override { return !mounted.empty() && mounted == target; }
  std::optional<std::string> MountWritableLayer(const std::string& dir, int64_t max_bytes) override {
    writable_layer = dir;
    writable_layer_bytes = max_bytes;
    return std::nullopt;
  }
  std::string writable_layer;
  int64_t writable_layer_bytes = 0;
  std::vector<std::string> lower_dirs;
  std::string mounted, unmounted;
  std::optional<confine::IdRange> ids;
};

struct ImageCacheTest : ::testing::Test {
  fs::path root = fs::path(::testing::TempDir()) / ("cache-" + crypto::NewUuid());
  FakeRegistry registry;
  RegistryClient client{registry, {{"registry.test"}}};
  RecordingSink sink;
  std::chrono::system_clock::time_point clock{std::chrono::seconds(1700000000)};
  std::string base = MakeTar({{"bin/busybox", 'f', std::string(3000, 'b')}});
  std::string app = MakeTar({{"app/run", 'f', "run"}});
  std::string other = MakeTar({{"other/file", 'f', "o"}});
  std::unique_ptr<BlobStore> blobs;
  std::unique_ptr<ImageCache> cache;

  void SetUp() override { Open(); }
  void TearDown() override { fs::remove_all(root); }
  void Open(ImageCacheOptions options = {}) {
    options.root = root.string();
    options.progress_interval = std::chrono::milliseconds(0);
    cache.reset();
    blobs = std::make_unique<BlobStore>(root.string());
    cache = std::make_unique<ImageCache>(client, *blobs, options, sink, "node-1", [this] { return clock; },
                                         [](const std::string& s, const std::string&) { return s; });
  }
  v1::EnsureImageReply Ensure(const std::string& image, const std::string& holder = "") {
    v1::EnsureImageRequest request;
    request.set_image(image);
    request.set_holder(holder);
    return cache->Ensure(request);
  }
};

TEST_F(ImageCacheTest, PullsThenServesFromCacheWithoutNetwork) {
  registry.AddImage("app", "1", {base, app});
  auto first = Ensure("registry.test/app:1");
  ASSERT_TRUE(first.ok()) << first.error_message();
  EXPECT_FALSE(first.cache_hit());
  ASSERT_EQ(first.image().layer_dirs_size(), 2);
  EXPECT_TRUE(fs::exists(first.image().layer_dirs(1) + "/app/run"));
  EXPECT_EQ(first.image().config().config().cmd(0), "/bin/sh");
  EXPECT_EQ(sink.Kinds().front(), "pulling");
  EXPECT_EQ(sink.Kinds().back(), "pulled");

  registry.host = "unreachable.test";  // the registry is gone
  size_t requests = registry.requests.size();
  auto second = Ensure("registry.test/app:1");
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second.cache_hit());
  EXPECT_EQ(registry.requests.size(), requests);
  EXPECT_EQ(second.image().manifest_digest(), first.image().manifest_digest());
}

TEST_F(ImageCacheTest, SharedLayersAreStoredOnce) {
  registry.AddImage("app", "1", {base, app});
  registry.AddImage("other", "1", {base, other});
  ASSERT_TRUE(Ensure("registry.test/app:1").ok());
  ASSERT_TRUE(Ensure("registry.test/other:1").ok());
  EXPECT_EQ(registry.blob_gets[DigestOf(base)], 1);
  int layer_dirs = 0;
  for (const auto& e : fs::directory_iterator(root / "layers")) layer_dirs += e.is_directory();
  EXPECT_EQ(layer_dirs, 3);
}

TEST_F(ImageCacheTest, ConcurrentEnsuresDownloadOnce) {
  registry.AddImage("app", "1", {base, app});
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] { ok += Ensure("registry.test/app:1").ok(); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 8);
  EXPECT_EQ(registry.blob_gets[DigestOf(base)], 1);
  EXPECT_EQ(registry.blob_gets[DigestOf(app)], 1);
}

TEST_F(ImageCacheTest, CorruptBlobIsRejectedAndNothingKept) {
  registry.AddImage("app", "1", {base, app});
  registry.blobs[DigestOf(app)] = app.substr(0, app.size() - 1) + "X";  // same size, wrong bytes
  auto reply = Ensure("registry.test/app:1");
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error_code(), "DigestMismatch");
  EXPECT_EQ(sink.Kinds().back(), "failed");
  EXPECT_FALSE(blobs->Has(DigestOf(app)));
  EXPECT_TRUE(cache->List().empty());
}

TEST_F(ImageCacheTest, HostileLayerIsRejectedAndNothingKept) {
  std::string hostile = MakeTar({{"../../../../tmp/skiff-escape", 'f', "x"}});
  registry.AddImage("evil", "1", {base, hostile});
  auto reply = Ensure("registry.test/evil:1");
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error_code(), "UnsafeLayer");
  EXPECT_FALSE(blobs->Has(DigestOf(hostile)));
  EXPECT_FALSE(fs::exists("/tmp/skiff-escape"));
  EXPECT_TRUE(cache->List().empty());
}

TEST_F(ImageCacheTest, TooLargeIsRefusedBeforeDownload) {
  ImageCacheOptions options;
  options.max_image_bytes = 100;
  Open(options);
  registry.AddImage("app", "1", {base, app});
  auto reply = Ensure("registry.test/app:1");
  EXPECT_EQ(reply.error_code(), "ImageTooLarge");
  EXPECT_EQ(registry.blob_gets[DigestOf(base)], 0);
}

TEST_F(ImageCacheTest, UnknownImagesAndBadNames) {
  EXPECT_EQ(Ensure("registry.test/nope:1").error_code(), "ImageNotFound");
  EXPECT_EQ(Ensure("Not A Reference").error_code(), "InvalidImageReference");
}

TEST_F(ImageCacheTest, GarbageCollectionEvictsLeastRecentlyUsedUnheldImages) {
  registry.AddImage("a", "1", {base, app});
  registry.AddImage("b", "1", {other});
  registry.AddImage("c", "1", {MakeTar({{"c", 'f', std::string(2000, 'c')}})});
  ASSERT_TRUE(Ensure("registry.test/a:1", "group-a").ok());  // held: never evicted
  clock += std::chrono::seconds(1);
  ASSERT_TRUE(Ensure("registry.test/b:1").ok());
  clock += std::chrono::seconds(1);
  ASSERT_TRUE(Ensure("registry.test/c:1").ok());
  clock += std::chrono::seconds(1);
  ASSERT_TRUE(Ensure("registry.test/b:1").ok());  // b is now more recent than c

  ImageCacheOptions options;
  options.max_cache_bytes = cache->UsageBytes() - 1;  // one eviction needed
  Open(options);
  auto evicted = cache->CollectGarbage();
  ASSERT_EQ(evicted.size(), 1u);
  std::vector<std::string> left;
  for (const auto& image : cache->List()) left.push_back(image.reference());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"registry.test/a:1", "registry.test/b:1"}));

  options.max_cache_bytes = 0;  // everything unheld goes; the held image stays with its layers
  Open(options);
  cache->CollectGarbage();
  ASSERT_EQ(cache->List().size(), 1u);
  EXPECT_EQ(cache->List()[0].reference(), "registry.test/a:1");
  EXPECT_TRUE(blobs->Has(DigestOf(base)));
  EXPECT_FALSE(blobs->Has(DigestOf(other)));

  EXPECT_TRUE(cache->Release("registry.test/a:1", "group-a"));
  cache->CollectGarbage();
  EXPECT_TRUE(cache->List().empty());
  EXPECT_FALSE(fs::exists(cache->LayerDir(DigestOf(base))));
}

TEST_F(ImageCacheTest, StateSurvivesRestartAndHalfWrittenFilesAreDiscarded) {
  registry.AddImage("app", "1", {base, app});
  ASSERT_TRUE(Ensure("registry.test/app:1", "holder").ok());
  std::ofstream(root / "tmp" / "deadbeef.partial") << "half";
  fs::create_directories(root / "layers" / "abc.tmp-123");
  Open();
  EXPECT_FALSE(fs::exists(root / "tmp" / "deadbeef.partial"));
  EXPECT_FALSE(fs::exists(root / "layers" / "abc.tmp-123"));
  registry.host = "unreachable.test";
  auto reply = Ensure("registry.test/app:1");
  EXPECT_TRUE(reply.ok());
  EXPECT_TRUE(reply.cache_hit());
  EXPECT_EQ(cache->List()[0].holders(), 1);
}

TEST_F(ImageCacheTest, RootfsUsesLayersTopFirst) {
  registry.AddImage("app", "1", {base, app});
  auto reply = Ensure("registry.test/app:1");
  RecordingMounter mounter;
  auto rootfs = cache->MountRootfs("registry.test/app:1", "grp-1_web", mounter);
  ASSERT_FALSE(ErrorOf(rootfs));
  EXPECT_EQ(mounter.lower_dirs, (std::vector<std::string>{reply.image().layer_dirs(1), reply.image().layer_dirs(0)}));
  EXPECT_EQ(std::get<std::string>(rootfs), (root / "containers/grp-1_web/rootfs").string());
  mounter.lower_dirs.clear();
  EXPECT_FALSE(ErrorOf(cache->MountRootfs("registry.test/app:1", "grp-1_web", mounter)));  // idempotent
  EXPECT_TRUE(mounter.lower_dirs.empty());
  EXPECT_TRUE(ErrorOf(cache->MountRootfs("registry.test/app:1", "../escape", mounter)));
  EXPECT_EQ(ErrorOf(cache->MountRootfs("registry.test/none:1", "x", mounter))->code, "ImageNotCached");
  EXPECT_FALSE(cache->UnmountRootfs("grp-1_web", mounter));
  EXPECT_FALSE(fs::exists(root / "containers/grp-1_web"));
}

}  // namespace
}  // namespace skiff::imagecache
