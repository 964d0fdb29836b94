#include "skiff/oci/process.h"

#include <gtest/gtest.h>

namespace skiff::oci {
namespace {

const ImageProcessDefaults kNginx{{"/docker-entrypoint.sh"}, {"nginx", "-g", "daemon off;"},
                                  {"PATH=/usr/bin:/bin", "NGINX_VERSION=1.25"}, "/srv", "101"};

TEST(MergeProcessTest, ImageDefaultsWhenNoCommand) {
  auto p = MergeProcess(kNginx, {}, {});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->args, (std::vector<std::string>{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"}));
  EXPECT_EQ(p->cwd, "/srv");
  EXPECT_EQ(p->user, "101");
}

TEST(MergeProcessTest, CommandReplacesEntrypointAndCmd) {
  auto p = MergeProcess(kNginx, {"/bin/sh", "-c", "echo hi"}, {});
  EXPECT_EQ(p->args, (std::vector<std::string>{"/bin/sh", "-c", "echo hi"}));
}

TEST(MergeProcessTest, ContainerEnvOverridesByName) {
  auto p = MergeProcess(kNginx, {}, {{"NGINX_VERSION", "custom"}, {"EXTRA", "1"}});
  EXPECT_EQ(p->env, (std::vector<std::string>{"PATH=/usr/bin:/bin", "NGINX_VERSION=custom", "EXTRA=1"}));
}

TEST(MergeProcessTest, DefaultsPathCwdAndUser) {
  auto p = MergeProcess({{}, {"/app"}, {}, "", ""}, {}, {});
  EXPECT_EQ(p->env.front(), std::string("PATH=") + kDefaultPath);
  EXPECT_EQ(p->cwd, "/");
  EXPECT_EQ(p->user, "0");
}

TEST(MergeProcessTest, NothingToRun) { EXPECT_FALSE(MergeProcess({}, {}, {{"A", "b"}}).has_value()); }

}  // namespace
}  // namespace skiff::oci
