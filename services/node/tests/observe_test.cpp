#include "skiff/node/observe.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace skiff::node {
namespace {
namespace fs = std::filesystem;

TEST(ObserveTest, LogsWithTailAndTimestampsAcrossRotatedFiles) {
  fs::path dir = fs::path(::testing::TempDir()) / "logs-observe";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "log.2") << "2026-11-22T00:00:01.000000Z stdout one\n";
  std::ofstream(dir / "log.1") << "2026-11-22T00:00:02.000000Z stderr two\n";
  std::ofstream(dir / "log") << "2026-11-22T00:00:03.000000Z stdout three\n2026-11-22T00:00:04.000000Z stdout four\n";
  const std::string path = (dir / "log").string();
  EXPECT_EQ(ReadLogs(path, 0, false), "one\ntwo\nthree\nfour\n");
  EXPECT_EQ(ReadLogs(path, 2, false), "three\nfour\n");
  EXPECT_EQ(ReadLogs(path, 1, true), "2026-11-22T00:00:04.000000Z four\n");
  EXPECT_EQ(ReadLogs((dir / "missing").string(), 5, false), "");
}

TEST(ObserveTest, UsageFromCgroupFiles) {
  fs::path root = fs::path(::testing::TempDir()) / "cgroup-observe";
  fs::create_directories(root / "cpuacct/skiff/g/c");
  fs::create_directories(root / "memory/skiff/g/c");
  std::ofstream(root / "cpuacct/skiff/g/c/cpuacct.usage") << "2500000000\n";
  std::ofstream(root / "memory/skiff/g/c/memory.usage_in_bytes") << "1048576\n";
  auto usage = ReadUsage(root.string(), "/skiff/g/c");
  ASSERT_TRUE(usage);
  EXPECT_DOUBLE_EQ(usage->cpu_seconds, 2.5);
  EXPECT_DOUBLE_EQ(usage->memory_bytes, 1048576);
  EXPECT_FALSE(ReadUsage(root.string(), "/skiff/g/missing").has_value());
}

}  // namespace
}  // namespace skiff::node
