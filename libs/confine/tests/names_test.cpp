#include "skiff/confine/names.h"

#include <gtest/gtest.h>

namespace skiff::confine {
namespace {

TEST(NamesTest, StorageAccountNamesFollowAzure) {
  EXPECT_TRUE(IsStorageAccountName("abc"));
  EXPECT_TRUE(IsStorageAccountName("skiffdata2026"));
  EXPECT_FALSE(IsStorageAccountName("ab"));
  EXPECT_FALSE(IsStorageAccountName(std::string(25, 'a')));
  EXPECT_FALSE(IsStorageAccountName("Upper"));
  EXPECT_FALSE(IsStorageAccountName("with-hyphen"));
  EXPECT_FALSE(IsStorageAccountName("../../.."));
  EXPECT_FALSE(IsStorageAccountName("a/b"));
}

TEST(NamesTest, ShareNamesFollowAzure) {
  EXPECT_TRUE(IsShareName("data"));
  EXPECT_TRUE(IsShareName("my-share-1"));
  EXPECT_FALSE(IsShareName("ab"));
  EXPECT_FALSE(IsShareName(std::string(64, 'a')));
  EXPECT_FALSE(IsShareName("-data"));
  EXPECT_FALSE(IsShareName("data-"));
  EXPECT_FALSE(IsShareName("da--ta"));
  EXPECT_FALSE(IsShareName(".."));
  EXPECT_FALSE(IsShareName("../../etc"));
  EXPECT_FALSE(IsShareName("Data"));
}

TEST(NamesTest, FileNamesAreOneComponent) {
  EXPECT_TRUE(IsFileName("config.json"));
  EXPECT_TRUE(IsFileName(".hidden"));
  EXPECT_FALSE(IsFileName(""));
  EXPECT_FALSE(IsFileName("."));
  EXPECT_FALSE(IsFileName(".."));
  EXPECT_FALSE(IsFileName("a/b"));
  EXPECT_FALSE(IsFileName(std::string("a\0b", 3)));
  EXPECT_FALSE(IsFileName(std::string(256, 'a')));
}

TEST(NamesTest, MountPathsAvoidTheRuntimesOwnTrees) {
  EXPECT_EQ(CheckMountPath("/data"), std::nullopt);
  EXPECT_EQ(CheckMountPath("/var/lib/app"), std::nullopt);
  EXPECT_EQ(CheckMountPath("/processes"), std::nullopt);
  EXPECT_EQ(CheckMountPath("/mnt/a..b"), std::nullopt);
  for (const char* refused : {"", "data", "/", "//", "/proc", "/proc/", "//proc/sys", "/sys/fs/cgroup", "/dev",
                              "/dev/shm", "/a/../proc", "/a/./b", "/a:b", "/a\nb"}) {
    EXPECT_NE(CheckMountPath(refused), std::nullopt) << refused;
  }
}

TEST(NamesTest, RelativePathsStayBeneath) {
  EXPECT_EQ(CheckRelativePath(""), std::nullopt);
  EXPECT_EQ(CheckRelativePath("."), std::nullopt);
  EXPECT_EQ(CheckRelativePath("docs/site"), std::nullopt);
  EXPECT_NE(CheckRelativePath("/etc"), std::nullopt);
  EXPECT_NE(CheckRelativePath(".."), std::nullopt);
  EXPECT_NE(CheckRelativePath("a/../../b"), std::nullopt);
  EXPECT_NE(CheckRelativePath("a/.."), std::nullopt);
}

TEST(NamesTest, RepositoriesAreHttpsOrListedInsecureHosts) {
  EXPECT_EQ(CheckGitRepository("https://example.test/org/repo.git", {}), std::nullopt);
  EXPECT_EQ(CheckGitRepository("http://127.0.0.1:8080/repo.git", {"127.0.0.1"}), std::nullopt);
  EXPECT_EQ(CheckGitRepository("http://git.local:8080/repo.git", {"git.local:8080"}), std::nullopt);
  EXPECT_NE(CheckGitRepository("http://git.local:9090/repo.git", {"git.local:8080"}), std::nullopt);
  EXPECT_NE(CheckGitRepository("http://example.test/repo.git", {}), std::nullopt);
  for (const char* refused : {"/srv/repo", "file:///etc", "ext::sh -c id", "ssh://host/repo", "git://host/repo",
                              "--upload-pack=touch /x", "-u", "https://user:pw@host/repo", "https://", "https://-oX/r",
                              "https://host/re po", "https://host/\nrepo"}) {
    EXPECT_NE(CheckGitRepository(refused, {"host"}), std::nullopt) << refused;
  }
}

}  // namespace
}  // namespace skiff::confine
