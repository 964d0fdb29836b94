// The image cache against a real docker-registry (started through integration-tests/infra.sh
// and seeded with the busybox test images), over real HTTP, and the skiff-imagecache binary
// over real NATS.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "skiff/bus/nats_bus.h"
#include "skiff/imagecache/image_cache.h"

namespace skiff::imagecache {
namespace {
namespace fs = std::filesystem;

std::string Shell(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  int status = ::pclose(pipe);
  if (status != 0) ADD_FAILURE() << command << " failed:\n" << output;
  return output;
}

// Counts blob downloads that really reach the registry.
class CountingHttp : public HttpClient {
 public:
  HttpResult Get(const Url& url, const std::vector<std::pair<std::string, std::string>>& headers,
                 const BodySink* sink) override {
    if (url.target.find("/blobs/") != std::string::npos) {
      std::lock_guard lock(mutex);
      ++blob_gets[url.target.substr(url.target.find("/blobs/") + 7)];
    }
    return inner.Get(url, headers, sink);
  }
  int Gets(const std::string& digest) {
    std::lock_guard lock(mutex);
    return blob_gets[digest];
  }
  int TotalGets() {
    std::lock_guard lock(mutex);
    int total = 0;
    for (const auto& [_, n] : blob_gets) total += n;
    return total;
  }
  BeastHttpClient inner;
  std::mutex mutex;
  std::map<std::string, int> blob_gets;
};

class NullSink : public ImageEventSink {
 public:
  void Publish(const v1::ImageEvent& event) override {
    std::lock_guard lock(mutex);
    kinds.push_back(event.has_pulling() ? "pulling" : event.has_pulled() ? "pulled" : "failed");
    if (event.has_failed()) reasons.push_back(event.failed().reason());
  }
  std::mutex mutex;
  std::vector<std::string> kinds, reasons;
};

class Infra : public ::testing::Environment {
 public:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("skiff-it-imagecache-" + std::to_string(::getpid()));
    Shell(std::string(SKIFF_SOURCE_DIR) + "/integration-tests/infra.sh start " + dir.string() + " --registry");
    std::ifstream env(dir / "infra.env");
    for (std::string line; std::getline(env, line);) {
      auto eq = line.find('=');
      values[line.substr(0, eq)] = line.substr(eq + 1);
    }
    registry = values["REGISTRY"];
    // Extra images: one with a unique layer to corrupt, one with a hostile layer.
    const std::string build = std::string(SKIFF_SOURCE_DIR) + "/integration-tests/make_oci_image.py " + (dir / "extra").string();
    Shell(build + " corrupt unique && " + build + " hostile hostile");
    for (const char* tag : {"corrupt", "hostile"}) {
      Shell("skopeo copy -q --dest-tls-verify=false oci:" + (dir / "extra").string() + ":" + tag + " docker://" + registry +
          "/skiff/" + tag + ":1");
    }
    // A second registry that wants a user name and password (htpasswd, bcrypt).
    Shell("htpasswd -Bbc " + (dir / "htpasswd").string() + " skiff s3cret");
    auth_port = Shell("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'");
    auth_port.erase(auth_port.find_last_not_of("\n") + 1);
    Shell("bash -c 'source " + std::string(SKIFF_SOURCE_DIR) + "/scripts/lib/stack.sh && start_registry " +
        (dir / "auth-registry").string() + " " + auth_port + " " + (dir / "htpasswd").string() +
        " && echo $REGISTRY_PID >> " + (dir / "pids").string() + "'");
    Shell("skopeo copy -q --dest-tls-verify=false --dest-creds skiff:s3cret docker://" + registry +
        "/skiff/hello:1 docker://127.0.0.1:" + auth_port + "/private/hello:1 --src-tls-verify=false");
  }
  void TearDown() override { Shell(std::string(SKIFF_SOURCE_DIR) + "/integration-tests/infra.sh stop " + dir.string()); }

  fs::path dir;
  std::map<std::string, std::string> values;
  std::string registry, auth_port;
};

Infra* infra = nullptr;

struct RealRegistryTest : ::testing::Test {
  fs::path root = infra->dir / ("cache-" + crypto::NewUuid());
  CountingHttp http;
  RegistryClient client{http, {}};
  NullSink sink;
  std::chrono::system_clock::time_point clock = std::chrono::system_clock::now();
  std::unique_ptr<BlobStore> blobs;
  std::unique_ptr<ImageCache> cache;
  void SetUp() override { Open({}); }
  void TearDown() override {
    cache.reset();
    fs::remove_all(root);
  }
  void Open(ImageCacheOptions options) {
    options.root = root.string();
    cache.reset();
    blobs = std::make_unique<BlobStore>(root.string());
    cache = std::make_unique<ImageCache>(client, *blobs, options, sink, "it-node", [this] { return clock; },
                                         [](const std::string& s, const std::string&) { return s; });
  }
  v1::EnsureImageReply Ensure(const std::string& image, const std::string& user = "", const std::string& password = "") {
    v1::EnsureImageRequest request;
    request.set_image(image);
    if (!user.empty()) {
      auto* cred = request.add_credentials();
      cred->set_server(image.substr(0, image.find('/')));
      cred->set_username(user);
      cred->set_password(password);
    }
    return cache->Ensure(request);
  }
  std::string Image(const std::string& name) { return infra->registry + "/skiff/" + name + ":1"; }
};

TEST_F(RealRegistryTest, PullsAndUnpacksARunnableRootfs) {
  auto reply = Ensure(Image("hello"));
  ASSERT_TRUE(reply.ok()) << reply.error_code() << ": " << reply.error_message();
  ASSERT_EQ(reply.image().layer_dirs_size(), 1);
  const std::string layer = reply.image().layer_dirs(0);
  EXPECT_TRUE(fs::exists(layer + "/bin/busybox"));
  EXPECT_TRUE(fs::is_symlink(layer + "/bin/sh"));
  EXPECT_EQ(Shell(layer + "/bin/busybox echo unpacked"), "unpacked\n");
  EXPECT_EQ(reply.image().config().config().cmd(2), "echo hello from skiff");
}

// A registry that is down: every request fails as a refused connection would.
class DownRegistry : public HttpClient {
 public:
  HttpResult Get(const Url&, const std::vector<std::pair<std::string, std::string>>&, const BodySink*) override {
    ++calls;
    HttpResult result;
    result.error = "connection refused";
    return result;
  }
  std::atomic<int> calls{0};
};

TEST_F(RealRegistryTest, CacheHitNeedsNoRegistry) {
  ASSERT_TRUE(Ensure(Image("sleeper")).ok());
  cache.reset();
  // A restarted cache whose registry is down still serves the image, without trying the network.
  DownRegistry down;
  RegistryClient down_client(down, {});
  ImageCache offline(down_client, *blobs, {root.string()}, sink, "it-node", [this] { return clock; },
                     [](const std::string& s, const std::string&) { return s; });
  v1::EnsureImageRequest request;
  request.set_image(Image("sleeper"));
  auto reply = offline.Ensure(request);
  EXPECT_TRUE(reply.ok());
  EXPECT_TRUE(reply.cache_hit());
  EXPECT_EQ(down.calls, 0);
  request.set_image(Image("hello"));  // not cached: the outage is reported
  EXPECT_EQ(offline.Ensure(request).error_code(), "RegistryUnavailable");
  EXPECT_EQ(down.calls, 1);
}

TEST_F(RealRegistryTest, SharedLayersAreFetchedAndStoredOnce) {
  auto hello = Ensure(Image("hello"));
  auto httpd = Ensure(Image("httpd"));
  ASSERT_TRUE(hello.ok() && httpd.ok());
  EXPECT_EQ(hello.image().layer_dirs(0), httpd.image().layer_dirs(0));  // busybox layer shared
  const std::string layer_digest = "sha256:" + fs::path(hello.image().layer_dirs(0)).filename().string();
  EXPECT_EQ(http.Gets(layer_digest), 1);
  EXPECT_NE(hello.image().config_digest(), httpd.image().config_digest());
}

TEST_F(RealRegistryTest, ConcurrentPullsFetchEachBlobOnce) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) threads.emplace_back([&] { ok += Ensure(Image("httpd")).ok(); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 8);
  for (const auto& [digest, gets] : http.blob_gets) EXPECT_EQ(gets, 1) << digest;
}

TEST_F(RealRegistryTest, CorruptedBlobIsRejected) {
  // Flip bytes of the unique layer in the registry's own storage.
  std::string found = Shell("find " + (infra->dir / "registry/data").string() + " -path '*blobs*' -name data -size +2k");
  std::string corrupted;
  for (size_t start = 0; start < found.size();) {
    size_t end = found.find('\n', start);
    std::string path = found.substr(start, end - start);
    start = end + 1;
    std::string digest = fs::path(path).parent_path().filename().string();
    // The only blob over 2 KiB that came from the extra layout is skiff/corrupt:1's layer.
    if (fs::exists(infra->dir / "extra/blobs/sha256" / digest)) {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(100);
      f.write("CORRUPTED", 9);
      corrupted = digest;
    }
  }
  ASSERT_FALSE(corrupted.empty());
  auto reply = Ensure(Image("corrupt"));
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error_code(), "DigestMismatch");
  EXPECT_FALSE(blobs->Has("sha256:" + corrupted));
  EXPECT_TRUE(cache->List().empty());
}

TEST_F(RealRegistryTest, HostileLayerIsRejected) {
  auto reply = Ensure(Image("hostile"));
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error_code(), "UnsafeLayer");
  EXPECT_NE(reply.error_message().find("leaves the layer"), std::string::npos) << reply.error_message();
  EXPECT_FALSE(fs::exists("/tmp/skiff-hostile-escape"));
  EXPECT_EQ(sink.kinds.back(), "failed");
}

TEST_F(RealRegistryTest, PasswordProtectedRegistry) {
  const std::string image = "127.0.0.1:" + infra->auth_port + "/private/hello:1";
  auto anonymous = Ensure(image);
  EXPECT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.error_code(), "RegistryUnauthorized");
  auto wrong = Ensure(image, "skiff", "wrong");
  EXPECT_EQ(wrong.error_code(), "RegistryUnauthorized");
  auto right = Ensure(image, "skiff", "s3cret");
  EXPECT_TRUE(right.ok()) << right.error_message();
}

TEST_F(RealRegistryTest, UnknownImageTagAndRegistryDown) {
  EXPECT_EQ(Ensure(infra->registry + "/skiff/nope:1").error_code(), "ImageNotFound");
  EXPECT_EQ(Ensure(infra->registry + "/skiff/hello:nope").error_code(), "ImageNotFound");
  EXPECT_EQ(Ensure("127.0.0.1:1/skiff/hello:1").error_code(), "RegistryUnavailable");
}

TEST_F(RealRegistryTest, GarbageCollectionEvictsInLruOrder) {
  std::map<std::string, std::string> digest_of;
  for (const char* name : {"hello", "httpd", "sleeper"}) {
    auto reply = Ensure(Image(name));
    ASSERT_TRUE(reply.ok());
    digest_of[name] = reply.image().manifest_digest();
    clock += std::chrono::seconds(10);
  }
  ASSERT_TRUE(Ensure(Image("hello")).ok());  // hello becomes the most recently used
  ImageCacheOptions options;
  options.max_cache_bytes = 0;
  Open(options);
  auto evicted = cache->CollectGarbage();
  EXPECT_EQ(evicted, (std::vector<std::string>{digest_of["httpd"], digest_of["sleeper"], digest_of["hello"]}));
  EXPECT_TRUE(cache->List().empty());
  EXPECT_TRUE(fs::is_empty(root / "layers"));
}

TEST_F(RealRegistryTest, OverlayRootfsMounts) {
  ASSERT_TRUE(Ensure(Image("httpd")).ok());
  OverlayMounter mounter;
  auto rootfs = cache->MountRootfs(Image("httpd"), "it-container", mounter);
  ASSERT_FALSE(ErrorOf(rootfs)) << ErrorOf(rootfs)->message;
  const std::string path = std::get<std::string>(rootfs);
  EXPECT_TRUE(fs::exists(path + "/www/index.html"));
  std::ofstream(path + "/written-by-container") << "x";  // goes to the container's upper dir
  EXPECT_TRUE(fs::exists(root / "containers/it-container/layer/upper/written-by-container"));
  // The writable layer is a capped tmpfs: the container's writes never reach the cache's disk.
  struct statvfs layer {};
  ASSERT_EQ(::statvfs((root / "containers/it-container/layer").c_str(), &layer), 0);
  EXPECT_LE(static_cast<int64_t>(layer.f_blocks) * static_cast<int64_t>(layer.f_frsize), 1LL << 30);
  EXPECT_EQ(Shell("findmnt -n -o FSTYPE " + (root / "containers/it-container/layer").string()), "tmpfs\n");
  EXPECT_FALSE(cache->UnmountRootfs("it-container", mounter));
  EXPECT_FALSE(fs::exists(path));
}

// In a user namespace's range: the image's files (root's on disk) belong to the range's root,
// what the container writes is stored under its range's ids, and the cached layers are untouched
// (owners and contents) when the container's file system goes.
TEST_F(RealRegistryTest, AnIdmappedRootfsBelongsToTheContainersRange) {
  ASSERT_TRUE(Ensure(Image("httpd")).ok());
  OverlayMounter mounter;
  const confine::IdRange range{500000, 65536};
  auto rootfs = cache->MountRootfs(Image("httpd"), "it-mapped", mounter, range);
  ASSERT_FALSE(ErrorOf(rootfs)) << ErrorOf(rootfs)->message;
  const std::string path = std::get<std::string>(rootfs);
  struct stat seen {};
  ASSERT_EQ(::stat((path + "/www/index.html").c_str(), &seen), 0);
  EXPECT_EQ(seen.st_uid, range.host_base) << "root's file in the image is the container root's";
  ASSERT_EQ(::stat(path.c_str(), &seen), 0);
  EXPECT_EQ(seen.st_uid, range.host_base);
  // The container's root (host id 500000) writes; on disk it is that id, not host root.
  pid_t writer = ::fork();
  if (writer == 0) {
    if (::setgid(range.host_base) != 0 || ::setuid(range.host_base) != 0) ::_exit(2);
    std::ofstream out(path + "/www/index.html", std::ios::app);
    out << "changed";
    ::_exit(out.good() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(writer, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the range's root may write its own image files";
  ASSERT_EQ(::stat((root / "containers/it-mapped/layer/upper/www/index.html").c_str(), &seen), 0);
  EXPECT_EQ(seen.st_uid, range.host_base);
  EXPECT_FALSE(cache->UnmountRootfs("it-mapped", mounter));
  EXPECT_FALSE(fs::exists(root / "containers/it-mapped"));
  // The layer itself still has root's file, unchanged.
  auto again = cache->MountRootfs(Image("httpd"), "it-plain", mounter);
  ASSERT_FALSE(ErrorOf(again));
  ASSERT_EQ(::stat((std::get<std::string>(again) + "/www/index.html").c_str(), &seen), 0);
  EXPECT_EQ(seen.st_uid, 0u);
  std::ifstream text(std::get<std::string>(again) + "/www/index.html");
  std::string content((std::istreambuf_iterator<char>(text)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content.find("changed"), std::string::npos);
  EXPECT_FALSE(cache->UnmountRootfs("it-plain", mounter));
}

// The service binary over real NATS: ensure with progress events on JetStream, list, pre-pull,
// rootfs mount and release.
TEST(ImageCacheServiceTest, ServesRequestsOverNats) {
  const fs::path root = infra->dir / "service-cache";
  const std::string nats_url = infra->values["NATS_URL"];
  const std::string prepulled = infra->registry + "/skiff/sleeper:1";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("SKIFF_BUS_URL", nats_url.c_str(), 1);
    ::setenv("SKIFF_IMAGECACHE_ROOT", root.c_str(), 1);
    ::setenv("SKIFF_IMAGECACHE_NODE_ID", "it-node", 1);
    ::setenv("SKIFF_IMAGECACHE_PREPULL", prepulled.c_str(), 1);
    ::setenv("SKIFF_LOG_LEVEL", "warn", 1);
    ::execl(SKIFF_IMAGECACHE_BIN, SKIFF_IMAGECACHE_BIN, "serve", nullptr);
    ::_exit(127);
  }
  bus::NatsBus bus(nats_url, "imagecache-it");
  bus.EnsureStream({"SKIFF_EVENTS", {"skiff.events.>"}, std::chrono::seconds(120), true});
  auto consumer = bus.PullSubscribe("SKIFF_EVENTS", "skiff.events.image.>", "imagecache-it");

  auto request = [&](const std::string& verb, const google::protobuf::Message& message) {
    std::optional<std::string> reply;
    for (int i = 0; i < 100 && !reply; ++i) {  // until the service is up
      reply = bus.Request("skiff.imagecache.it-node." + verb, message.SerializeAsString(), std::chrono::seconds(60));
      if (!reply) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return reply.value_or("");
  };
  v1::EnsureImageRequest ensure;
  ensure.set_image(infra->registry + "/skiff/httpd:1");
  ensure.set_holder("group-1/web");
  ensure.set_causation_id("it-causation");
  v1::EnsureImageReply ensured;
  ASSERT_TRUE(ensured.ParseFromString(request("ensure", ensure)));
  ASSERT_TRUE(ensured.ok()) << ensured.error_message();
  EXPECT_EQ(ensured.image().config().config().cmd(0), "/bin/httpd");

  v1::MountRootfsRequest mount;
  mount.set_image(ensure.image());
  mount.set_container_id("group-1_web");
  v1::MountRootfsReply mounted;
  ASSERT_TRUE(mounted.ParseFromString(request("mount", mount)));
  ASSERT_TRUE(mounted.ok()) << mounted.error_message();
  EXPECT_TRUE(fs::exists(mounted.rootfs() + "/www/index.html"));
  v1::MountRootfsReply unmounted;
  ASSERT_TRUE(unmounted.ParseFromString(request("unmount", mount)));
  EXPECT_TRUE(unmounted.ok());

  // Pulling and Pulled events for the ensure, with its causation id.
  std::vector<std::string> kinds;
  for (int i = 0; i < 20 && std::find(kinds.begin(), kinds.end(), "skiff.events.image.pulled.it-node") == kinds.end(); ++i) {
    for (auto& message : consumer->Fetch(50, std::chrono::milliseconds(500))) {
      v1::ImageEvent event;
      event.ParseFromString(message.Data());
      if (event.causation_id() == "it-causation") kinds.push_back(message.Subject());
      message.Ack();
    }
  }
  ASSERT_FALSE(kinds.empty());
  EXPECT_EQ(kinds.front(), "skiff.events.image.pulling.it-node");
  EXPECT_EQ(kinds.back(), "skiff.events.image.pulled.it-node");

  // The configured image was pre-pulled at start; the list shows both, for any node.
  v1::ListImagesReply listed;
  for (int i = 0; i < 50; ++i) {
    v1::ListImagesRequest list_request;
    auto reply = bus.Request("skiff.imagecache.list", list_request.SerializeAsString(), std::chrono::seconds(5));
    ASSERT_TRUE(reply);
    listed.ParseFromString(*reply);
    if (listed.images_size() == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::set<std::string> references;
  for (const auto& image : listed.images()) references.insert(image.reference());
  EXPECT_EQ(references, (std::set<std::string>{prepulled, ensure.image()}));

  v1::ReleaseImageRequest release;
  release.set_image(ensure.image());
  release.set_holder("group-1/web");
  v1::ReleaseImageReply released;
  ASSERT_TRUE(released.ParseFromString(request("release", release)));
  EXPECT_TRUE(released.ok());

  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace skiff::imagecache

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  skiff::imagecache::infra = new skiff::imagecache::Infra;
  ::testing::AddGlobalTestEnvironment(skiff::imagecache::infra);
  return RUN_ALL_TESTS();
}
