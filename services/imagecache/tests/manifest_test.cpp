#include "skiff/imagecache/manifest.h"

#include <gtest/gtest.h>

namespace skiff::imagecache {
namespace {

const char* kIndex = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
  {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
  {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"architecture":"amd64","os":"linux"}},
  {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":1,"platform":{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1"}}]})";

TEST(ManifestTest, SelectsLinuxAmd64FromIndex) {
  auto index = ParseIndex(kIndex);
  ASSERT_FALSE(ErrorOf(index));
  auto chosen = SelectPlatform(std::get<v1::Index>(index), "linux", "amd64");
  ASSERT_TRUE(chosen);
  EXPECT_EQ(chosen->digest(), "sha256:bb");
  EXPECT_FALSE(SelectPlatform(std::get<v1::Index>(index), "linux", "s390x").has_value());
  EXPECT_EQ(std::get<v1::Index>(index).manifests(2).platform().os_version(), "10.0.17763.1");
}

TEST(ManifestTest, KindFromContentTypeOrDocument) {
  EXPECT_EQ(KindOf("application/vnd.docker.distribution.manifest.list.v2+json", ""), DocumentKind::kIndex);
  EXPECT_EQ(KindOf("application/vnd.docker.distribution.manifest.v2+json", ""), DocumentKind::kManifest);
  EXPECT_EQ(KindOf("application/json", kIndex), DocumentKind::kIndex);
  EXPECT_EQ(KindOf("", R"({"schemaVersion":2,"config":{},"layers":[]})"), DocumentKind::kManifest);
  EXPECT_EQ(KindOf("application/vnd.docker.distribution.manifest.v1+prettyjws", R"({"schemaVersion":1})"),
            DocumentKind::kUnsupported);
  EXPECT_EQ(KindOf("", "not json"), DocumentKind::kUnsupported);
}

TEST(ManifestTest, DockerSchema2AndConfig) {
  auto manifest = ParseManifest(R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7023,"digest":"sha256:b5b2"},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":32654,"digest":"sha256:e692"}]})");
  ASSERT_FALSE(ErrorOf(manifest));
  EXPECT_EQ(std::get<v1::Manifest>(manifest).layers(0).size(), 32654);
  EXPECT_TRUE(IsSupportedLayerType(std::get<v1::Manifest>(manifest).layers(0).media_type()));
  EXPECT_FALSE(IsSupportedLayerType("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"));
  auto config = ParseImageConfig(R"({"os":"linux","config":{"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],
    "Env":["PATH=/usr/bin"],"WorkingDir":"/srv","User":"101","ExposedPorts":{"80/tcp":{}}}})");
  ASSERT_FALSE(ErrorOf(config));
  const auto& c = std::get<v1::ImageConfig>(config).config();
  EXPECT_EQ(c.entrypoint(0), "/docker-entrypoint.sh");
  EXPECT_EQ(c.cmd_size(), 3);
  EXPECT_EQ(c.working_dir(), "/srv");
  EXPECT_TRUE(c.exposed_ports().fields().count("80/tcp"));
  EXPECT_TRUE(ErrorOf(ParseManifest("{broken")));
}

}  // namespace
}  // namespace skiff::imagecache
