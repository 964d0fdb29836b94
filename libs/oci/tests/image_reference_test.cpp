#include "skiff/oci/image_reference.h"

#include <gtest/gtest.h>

namespace skiff::oci {
namespace {

const std::string kDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ImageReferenceTest, DockerHubShortNames) {
  auto ref = ParseImageReference("nginx");
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->String(), "docker.io/library/nginx:latest");
  EXPECT_EQ(ref->ApiHost(), "registry-1.docker.io");
  EXPECT_EQ(ParseImageReference("bitnami/redis:7")->String(), "docker.io/bitnami/redis:7");
  EXPECT_EQ(ParseImageReference("docker.io/nginx:1.25")->String(), "docker.io/library/nginx:1.25");
}

TEST(ImageReferenceTest, RegistriesTagsAndDigests) {
  auto ref = ParseImageReference("127.0.0.1:5000/skiff/hello:1");
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->registry, "127.0.0.1:5000");
  EXPECT_EQ(ref->repository, "skiff/hello");
  EXPECT_EQ(ref->tag, "1");
  EXPECT_TRUE(ref->IsLoopbackRegistry());
  auto pinned = ParseImageReference("mcr.microsoft.com/azuredocs/aci-helloworld@" + kDigest);
  ASSERT_TRUE(pinned);
  EXPECT_EQ(pinned->tag, "");
  EXPECT_EQ(pinned->ManifestReference(), kDigest);
  EXPECT_FALSE(pinned->IsLoopbackRegistry());
  EXPECT_EQ(ParseImageReference("localhost/app")->registry, "localhost");
}

TEST(ImageReferenceTest, RejectsInvalid) {
  for (const char* bad : {"", "UPPER/case", "nginx:", ":tag", "a//b", "-a", "nginx:tag with space", "host:port/x",
                          "a@sha256:xyz", "a@md5:0123"}) {
    EXPECT_FALSE(ParseImageReference(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace skiff::oci
