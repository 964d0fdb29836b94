#include "skiff/confine/idmap.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>
#include <fstream>

#include "skiff/confine/mounts.h"

namespace skiff::confine {
namespace {

namespace fs = std::filesystem;

class IdmapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    dir_ = fs::canonical(fs::temp_directory_path()) / ("skiff-idmap-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "source");
    fs::create_directories(dir_ / "target");
    std::ofstream(dir_ / "source/owned-by-root") << "x";
  }
  void TearDown() override {
    if (dir_.empty()) return;
    UnmountBeneath(dir_.string());
    fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(IdmapTest, ANamespaceMapsExactlyItsRange) {
  std::string error;
  UniqueFd user_namespace = UserNamespaceFor({200000, 65536}, &error);
  ASSERT_TRUE(user_namespace.Valid()) << error;
  EXPECT_FALSE(UserNamespaceFor({0, 65536}, &error).Valid()) << "host root is never in a range";
  EXPECT_FALSE(UserNamespaceFor({0xFFFF0000u, 0x20000}, &error).Valid());
}

// Threads making namespaces at once: each short-lived child inherits the others' pipe ends, so
// a child that waited for end of file would wait forever (a node placing four groups hung so).
TEST_F(IdmapTest, ManyThreadsMakeNamespacesAtOnce) {
  std::atomic<int> made{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        std::string error;
        if (UserNamespaceFor({400000u + static_cast<uint32_t>(t) * 65536, 65536}, &error).Valid()) ++made;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(made.load(), 40);
}

TEST_F(IdmapTest, AnIdmappedBindShowsDiskIdsShiftedAndStoresThemUnshifted) {
  auto error = BindIdmapped((dir_ / "source").string(), {300000, 65536}, (dir_ / "target").string(), true);
  if (error && error->find("Invalid argument") != std::string::npos) GTEST_SKIP() << "no idmapped mounts here: " << *error;
  ASSERT_EQ(error, std::nullopt);
  struct stat seen {};
  ASSERT_EQ(::stat((dir_ / "target/owned-by-root").c_str(), &seen), 0);
  EXPECT_EQ(seen.st_uid, 300000u);
  EXPECT_EQ(seen.st_gid, 300000u);
  // A file the range's id 300007 makes through the mount is id 7 on disk.
  ASSERT_EQ(::chown((dir_ / "target/owned-by-root").c_str(), 300007, 300007), 0);
  ASSERT_EQ(::stat((dir_ / "source/owned-by-root").c_str(), &seen), 0);
  EXPECT_EQ(seen.st_uid, 7u);
  // Host root is outside the range: it cannot own anything there.
  EXPECT_NE(::chown((dir_ / "target/owned-by-root").c_str(), 0, 0), 0);
  EXPECT_TRUE(IsMountPoint((dir_ / "target").string()));
}

}  // namespace
}  // namespace skiff::confine
