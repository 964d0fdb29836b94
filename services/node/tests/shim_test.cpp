#include "skiff/node/shim.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace skiff::node {
namespace {
namespace fs = std::filesystem;

TEST(ShimTest, LogLinesCarryTimeAndStream) {
  EXPECT_EQ(FormatLogLine("2026-11-22T00:00:00.000000Z", "stderr", "boom"), "2026-11-22T00:00:00.000000Z stderr boom\n");
  std::string now = NowRfc3339();
  EXPECT_EQ(now.size(), 27u);
  EXPECT_EQ(now.back(), 'Z');
}

TEST(ShimTest, LogRotatesAndKeepsNFiles) {
  fs::path dir = fs::path(::testing::TempDir()) / "rotate";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string path = (dir / "log").string();
  {
    RotatingLog log(path, 100, 2);
    for (int i = 0; i < 20; ++i) log.Write(std::string(30, static_cast<char>('a' + i)) + "\n");
  }
  EXPECT_TRUE(fs::exists(path));
  EXPECT_TRUE(fs::exists(path + ".1"));
  EXPECT_TRUE(fs::exists(path + ".2"));
  EXPECT_FALSE(fs::exists(path + ".3"));
  EXPECT_LE(fs::file_size(path), 100u);
  std::ifstream in(path);
  std::string last;
  for (std::string line; std::getline(in, line);) last = line;
  EXPECT_EQ(last, std::string(30, 't'));  // the newest line is in the live file
}

}  // namespace
}  // namespace skiff::node
