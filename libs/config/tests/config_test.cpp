#include "skiff/config/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace skiff::config {
namespace {

TEST(ConfigTest, ReadsIniSectionsAsDottedKeys) {
  std::string path = ::testing::TempDir() + "/skiff_config_test.ini";
  {
    std::ofstream out(path);
    out << "[gateway]\nlisten = 127.0.0.1:8443\nmax_cpu = 4.5\n[store]\npool_size=3\n";
  }
  Config config = Config::FromFile(path);
  EXPECT_EQ(config.GetString("gateway.listen", ""), "127.0.0.1:8443");
  EXPECT_DOUBLE_EQ(config.GetDouble("gateway.max_cpu", 0), 4.5);
  EXPECT_EQ(config.GetInt("store.pool_size", 0), 3);
  std::remove(path.c_str());
}

TEST(ConfigTest, EnvironmentOverridesFile) {
  Config config(std::map<std::string, std::string>{{"gateway.page_size", "100"}});
  ::setenv("SKIFF_GATEWAY_PAGE_SIZE", "7", 1);
  EXPECT_EQ(config.GetInt("gateway.page_size", 0), 7);
  ::unsetenv("SKIFF_GATEWAY_PAGE_SIZE");
  EXPECT_EQ(config.GetInt("gateway.page_size", 0), 100);
}

TEST(ConfigTest, RejectsMalformedValuesAndMissingRequiredKeys) {
  Config config({{"a", "12x"}, {"b", "maybe"}});
  EXPECT_THROW(config.GetInt("a", 0), std::runtime_error);
  EXPECT_THROW(config.GetBool("b", false), std::runtime_error);
  EXPECT_THROW(config.Require("missing.key"), std::runtime_error);
  EXPECT_THROW(Config::FromFile("/nonexistent/skiff.ini"), std::runtime_error);
}

TEST(ConfigTest, ListsAreTrimmed) {
  Config config(std::map<std::string, std::string>{{"versions", " 2023-05-01, ,2022-10-01-preview "}});
  EXPECT_EQ(config.GetList("versions", {}), (std::vector<std::string>{"2023-05-01", "2022-10-01-preview"}));
  EXPECT_EQ(config.GetList("other", {"x"}), (std::vector<std::string>{"x"}));
}

}  // namespace
}  // namespace skiff::config
