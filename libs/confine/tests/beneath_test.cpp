#include "skiff/confine/beneath.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace skiff::confine {
namespace {
namespace fs = std::filesystem;

class BeneathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base = fs::temp_directory_path() / ("confine-test-" + std::to_string(::getpid()));
    fs::remove_all(base);
    fs::create_directories(base / "root");
    fs::create_directories(base / "outside");
    std::ofstream(base / "outside/precious") << "keep";
    root = OpenDirectory((base / "root").string());
    ASSERT_TRUE(root.Valid());
  }
  void TearDown() override { fs::remove_all(base); }
  fs::path base;
  UniqueFd root;
};

TEST_F(BeneathTest, OpensWhatIsBeneath) {
  fs::create_directories(base / "root/a/b");
  EXPECT_TRUE(OpenBeneath(root.Get(), "a/b", O_RDONLY | O_DIRECTORY).Valid());
  EXPECT_TRUE(OpenBeneath(root.Get(), "", O_RDONLY | O_DIRECTORY).Valid());
}

TEST_F(BeneathTest, RefusesSymlinksAndDotDotOnTheWay) {
  fs::create_symlink(base / "outside", base / "root/out");
  fs::create_symlink("../outside", base / "root/relative-out");
  fs::create_symlink("a", base / "root/inside-link");
  fs::create_directories(base / "root/a");
  EXPECT_FALSE(OpenBeneath(root.Get(), "out/precious", O_RDONLY).Valid());
  EXPECT_EQ(errno, ELOOP);
  EXPECT_FALSE(OpenBeneath(root.Get(), "relative-out", O_RDONLY | O_DIRECTORY).Valid());
  EXPECT_FALSE(OpenBeneath(root.Get(), "inside-link", O_RDONLY | O_DIRECTORY).Valid());
  EXPECT_FALSE(OpenBeneath(root.Get(), "../outside", O_RDONLY | O_DIRECTORY).Valid());
  EXPECT_EQ(errno, EXDEV);
  EXPECT_FALSE(OpenBeneath(root.Get(), "/etc", O_RDONLY | O_DIRECTORY).Valid());
}

TEST_F(BeneathTest, MakesDirectoriesButNotThroughASymlink) {
  auto made = MakeDirectoriesBeneath(root.Get(), "x/y/z");
  ASSERT_TRUE(made.Valid());
  EXPECT_TRUE(fs::is_directory(base / "root/x/y/z"));
  fs::create_symlink(base / "outside", base / "root/planted");
  EXPECT_FALSE(MakeDirectoriesBeneath(root.Get(), "planted/new").Valid());
  EXPECT_FALSE(fs::exists(base / "outside/new"));
  EXPECT_FALSE(MakeDirectoriesBeneath(root.Get(), "x/../../outside/new").Valid());
  EXPECT_FALSE(fs::exists(base / "outside/new"));
}

TEST_F(BeneathTest, RemovesATreeWithoutFollowingSymlinks) {
  fs::create_directories(base / "root/tree/sub");
  std::ofstream(base / "root/tree/sub/file") << "x";
  fs::create_symlink(base / "outside", base / "root/tree/link");
  EXPECT_TRUE(RemoveTreeAt(root.Get(), "tree"));
  EXPECT_FALSE(fs::exists(base / "root/tree"));
  EXPECT_TRUE(fs::exists(base / "outside/precious"));
  fs::create_symlink(base / "outside", base / "root/link");
  EXPECT_TRUE(RemoveTreeAt(root.Get(), "link"));
  EXPECT_TRUE(fs::exists(base / "outside/precious"));
  EXPECT_TRUE(RemoveTreeAt(root.Get(), "absent"));
}

TEST_F(BeneathTest, ChownsATreeWithoutFollowingSymlinks) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  fs::create_directories(base / "root/tree/sub");
  std::ofstream(base / "root/tree/sub/file") << "x";
  fs::create_symlink(base / "outside", base / "root/tree/link");
  fs::create_symlink(base / "outside/precious", base / "root/tree/sub/file-link");
  UniqueFd tree = OpenBeneath(root.Get(), "tree", O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(ChownTreeAt(tree.Get(), 70000, 70001));
  struct stat st {};
  for (const char* path : {"root/tree", "root/tree/sub", "root/tree/sub/file"}) {
    ASSERT_EQ(::lstat((base / path).c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 70000u) << path;
    EXPECT_EQ(st.st_gid, 70001u) << path;
  }
  ASSERT_EQ(::lstat((base / "root/tree/link").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 70000u) << "the link itself";
  for (const char* path : {"outside", "outside/precious"}) {
    ASSERT_EQ(::stat((base / path).c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u) << path << " is not the tree's";
  }
}

TEST_F(BeneathTest, BindsOnlyWhatIsBeneath) {
  if (::geteuid() != 0) GTEST_SKIP() << "bind mounts need root";
  fs::create_directories(base / "root/site");
  std::ofstream(base / "root/site/index.html") << "hi";
  fs::create_symlink(base / "outside", base / "root/escape");
  EXPECT_EQ(BindBeneath(root.Get(), "site", (base / "mnt").string()), std::nullopt);
  EXPECT_TRUE(fs::exists(base / "mnt/index.html"));
  ::umount2((base / "mnt").c_str(), MNT_DETACH);
  auto refused = BindBeneath(root.Get(), "escape", (base / "mnt2").string());
  ASSERT_NE(refused, std::nullopt);
  EXPECT_NE(refused->find("leads out"), std::string::npos) << *refused;
  EXPECT_FALSE(fs::exists(base / "mnt2/precious"));
}

}  // namespace
}  // namespace skiff::confine
