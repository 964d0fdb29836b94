#include "skiff/imagecache/layer_unpacker.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <filesystem>
#include <fstream>

#include "test_support.h"

namespace skiff::imagecache {
namespace {
namespace fs = std::filesystem;
using testing::MakeTar;
using testing::TarEntry;

struct UnpackTest : ::testing::Test {
  fs::path dir = fs::path(::testing::TempDir()) / ("unpack-" + crypto::NewUuid());
  void SetUp() override { fs::create_directories(dir); }
  void TearDown() override { fs::remove_all(dir); }

  PullResult<UnpackStats> Unpack(const std::vector<TarEntry>& entries, const std::string& name = "layer",
                                 UnpackLimits limits = {}) {
    std::string blob = (dir / (name + ".tar.gz")).string();
    std::ofstream(blob, std::ios::binary) << MakeTar(entries);
    return UnpackLayer(blob, (dir / name).string(), limits);
  }
  std::string Read(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

TEST(SafeEntryPathTest, NormalisesAndRejectsEscapes) {
  EXPECT_EQ(SafeEntryPath("./usr//bin/./sh"), "usr/bin/sh");
  EXPECT_EQ(SafeEntryPath("/etc/passwd"), "etc/passwd");
  EXPECT_EQ(SafeEntryPath("./"), "");
  EXPECT_FALSE(SafeEntryPath("../etc/passwd").has_value());
  EXPECT_FALSE(SafeEntryPath("usr/../../etc").has_value());
}

TEST_F(UnpackTest, FilesDirsSymlinksAndHardlinks) {
  auto result = Unpack({{"bin", 'd'},
                        {"bin/busybox", 'f', "#!binary", 04755},
                        {"bin/sh", 'l', "busybox"},
                        {"bin/abs", 'l', "/bin/busybox"},
                        {"bin/hard", 'h', "bin/busybox"},
                        {"dev/null", 'c'}});
  ASSERT_FALSE(ErrorOf(result)) << ErrorOf(result)->message;
  EXPECT_EQ(Read(dir / "layer/bin/busybox"), "#!binary");
  EXPECT_EQ(fs::read_symlink(dir / "layer/bin/sh"), "busybox");
  EXPECT_EQ(fs::read_symlink(dir / "layer/bin/abs"), "/bin/busybox");  // resolved inside the container, later
  EXPECT_EQ(fs::hard_link_count(dir / "layer/bin/busybox"), 2u);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "layer/bin/busybox").c_str(), &st), 0);
  EXPECT_TRUE(st.st_mode & S_ISUID);
  EXPECT_FALSE(fs::exists(dir / "layer/dev/null"));  // device nodes are not created
  EXPECT_EQ(std::get<UnpackStats>(result).bytes, 8);
}

TEST_F(UnpackTest, WhiteoutsAndOpaqueDirectories) {
  auto result = Unpack({{"etc/.wh.motd", 'f'}, {"var/cache/.wh..wh..opq", 'f'}, {"var/cache/new", 'f', "n"}});
  ASSERT_FALSE(ErrorOf(result)) << ErrorOf(result)->message;
  struct stat st {};
  ASSERT_EQ(::lstat((dir / "layer/etc/motd").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, 0u);
  EXPECT_FALSE(fs::exists(dir / "layer/etc/.wh.motd"));
  char value[8] = {};
  ASSERT_EQ(::getxattr((dir / "layer/var/cache").c_str(), "trusted.overlay.opaque", value, sizeof value), 1);
  EXPECT_EQ(value[0], 'y');
  EXPECT_TRUE(fs::exists(dir / "layer/var/cache/new"));
}

TEST_F(UnpackTest, RejectsPathTraversal) {
  auto result = Unpack({{"../../escaped", 'f', "x"}});
  ASSERT_TRUE(ErrorOf(result));
  EXPECT_EQ(ErrorOf(result)->code, "UnsafeLayer");
  EXPECT_FALSE(fs::exists(dir / "escaped"));
  EXPECT_FALSE(fs::exists(dir / "layer"));  // nothing half-unpacked is left
}

// Found by the layer unpacker's fuzzer: a gzip header that ends early made libarchive fail
// without a message, and building the error from its null message crashed the image cache.
TEST_F(UnpackTest, ATruncatedBlobIsAnUnsafeLayerNotACrash) {
  const unsigned char truncated[] = {0x1f, 0x8b, 0x08, 0x00, 0x6e, 0xda, 0x14, 0x6b, 0xe7, 0x14,
                                     0x6b, 0xe7, 0x00, 0x00, 0x00, 0x45};
  const std::string blob = (dir / "truncated").string();
  std::ofstream(blob, std::ios::binary).write(reinterpret_cast<const char*>(truncated), sizeof truncated);
  auto result = UnpackLayer(blob, (dir / "layer").string(), {});
  ASSERT_TRUE(ErrorOf(result));
  EXPECT_EQ(ErrorOf(result)->code, "UnsafeLayer");
  EXPECT_FALSE(fs::exists(dir / "layer"));
}

TEST_F(UnpackTest, RejectsWritingThroughASymlink) {
  fs::create_directories(dir / "outside");
  auto result = Unpack({{"link", 'l', (dir / "outside").string()}, {"link/planted", 'f', "x"}});
  ASSERT_TRUE(ErrorOf(result));
  EXPECT_EQ(ErrorOf(result)->code, "UnsafeLayer");
  EXPECT_FALSE(fs::exists(dir / "outside/planted"));
  auto relative = Unpack({{"up", 'l', "../.."}, {"up/planted2", 'f', "x"}}, "layer2");
  ASSERT_TRUE(ErrorOf(relative));
  EXPECT_FALSE(fs::exists(dir.parent_path() / "planted2"));
}

// A hostile layer plants "x -> /" and then names a whiteout or an opaque marker beneath x: the
// whiteout would remove (and the marker tag) a host directory if applied by path. The target is
// a sentinel directory of this test reached through "/", so a regression harms nothing else.
TEST_F(UnpackTest, AWhiteoutThroughAPlantedSymlinkLeavesTheHostUntouched) {
  fs::create_directories(dir / "host/victim");
  std::ofstream(dir / "host/victim/data") << "precious";
  const std::string through_root = "x" + (dir / "host").string();  // x/<absolute path of host>
  auto whiteout = Unpack({{"x", 'l', "/"}, {through_root + "/.wh.victim", 'f'}}, "whiteout");
  ASSERT_TRUE(ErrorOf(whiteout));
  EXPECT_EQ(ErrorOf(whiteout)->code, "UnsafeLayer") << ErrorOf(whiteout)->message;
  EXPECT_EQ(Read(dir / "host/victim/data"), "precious");
  struct stat st {};
  ASSERT_EQ(::lstat((dir / "host/victim").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));

  auto opaque = Unpack({{"y", 'l', (dir / "host").string()}, {"y/victim/.wh..wh..opq", 'f'}}, "opaque");
  ASSERT_TRUE(ErrorOf(opaque));
  EXPECT_EQ(ErrorOf(opaque)->code, "UnsafeLayer");
  char value[8] = {};
  EXPECT_LT(::getxattr((dir / "host/victim").c_str(), "trusted.overlay.opaque", value, sizeof value), 0);

  auto relative = Unpack({{"up", 'l', "../.."}, {"up/.wh." + dir.filename().string(), 'f'}}, "relative");
  ASSERT_TRUE(ErrorOf(relative));
  EXPECT_TRUE(fs::exists(dir / "host/victim/data"));
}

TEST_F(UnpackTest, AHardLinkThroughAPlantedSymlinkIsRefused) {
  fs::create_directories(dir / "host");
  std::ofstream(dir / "host/secret") << "s";
  auto result = Unpack({{"x", 'l', (dir / "host").string()}, {"stolen", 'h', "x/secret"}});
  ASSERT_TRUE(ErrorOf(result));
  EXPECT_EQ(ErrorOf(result)->code, "UnsafeLayer");
  EXPECT_EQ(fs::hard_link_count(dir / "host/secret"), 1u);
}

TEST_F(UnpackTest, ALaterEntryReplacesAnEarlierOneWithoutFollowingIt) {
  fs::create_directories(dir / "host");
  std::ofstream(dir / "host/target") << "host file";
  auto result = Unpack({{"etc/conf", 'l', (dir / "host/target").string()}, {"etc/conf", 'f', "from the layer"}});
  ASSERT_FALSE(ErrorOf(result)) << ErrorOf(result)->message;
  EXPECT_EQ(Read(dir / "layer/etc/conf"), "from the layer");
  EXPECT_EQ(Read(dir / "host/target"), "host file");
}

TEST_F(UnpackTest, RejectsHardLinkOutOfTheLayer) {
  auto result = Unpack({{"stolen", 'h', "../../../etc/shadow"}});
  ASSERT_TRUE(ErrorOf(result));
  EXPECT_EQ(ErrorOf(result)->code, "UnsafeLayer");
}

TEST_F(UnpackTest, RejectsTooManyFilesAndGarbage) {
  std::vector<TarEntry> many;
  for (int i = 0; i < 50; ++i) many.push_back({"f" + std::to_string(i), 'f', "x"});
  UnpackLimits limits;
  limits.max_entries = 20;
  auto result = Unpack(many, "many", limits);
  ASSERT_TRUE(ErrorOf(result));
  EXPECT_NE(ErrorOf(result)->message.find("more than 20 files"), std::string::npos);

  std::string blob = (dir / "garbage").string();
  std::ofstream(blob) << "this is not a tarball at all, not even close";
  auto garbage = UnpackLayer(blob, (dir / "g").string(), {});
  ASSERT_TRUE(ErrorOf(garbage));
  EXPECT_EQ(ErrorOf(garbage)->code, "UnsafeLayer");
}

TEST_F(UnpackTest, UncompressedAndZstdLayersToo) {
  std::string blob = (dir / "plain.tar").string();
  std::ofstream(blob, std::ios::binary) << MakeTar({{"a", 'f', "plain"}}, false);
  ASSERT_FALSE(ErrorOf(UnpackLayer(blob, (dir / "plain").string(), {})));
  EXPECT_EQ(Read(dir / "plain/a"), "plain");
  std::string zstd_blob = (dir / "z.tar.zst").string();
  std::ofstream(zstd_blob, std::ios::binary) << MakeTar({{"z", 'f', "zstd"}}, false, true);
  ASSERT_FALSE(ErrorOf(UnpackLayer(zstd_blob, (dir / "z").string(), {})));
  EXPECT_EQ(Read(dir / "z/z"), "zstd");
}

}  // namespace
}  // namespace skiff::imagecache
