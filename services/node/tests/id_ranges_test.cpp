#include "skiff/node/id_ranges.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace skiff::node {
namespace {

namespace fs = std::filesystem;

UserNamespaceOptions Small() {
  UserNamespaceOptions options;
  options.enabled = true;
  options.first_host_id = 1000000;
  options.range_size = 65536;
  options.ranges = 3;
  return options;
}

TEST(IdRangeAllocatorTest, GroupsGetDisjointRangesAboveTheHostsIds) {
  IdRangeAllocator ids(Small(), "");
  auto a = ids.Acquire("a"), b = ids.Acquire("b"), c = ids.Acquire("c");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a, ids.Preferred("a"));
  for (const auto& range : {*a, *b, *c}) {
    EXPECT_GE(range.host_base, 1000000u);
    EXPECT_EQ((range.host_base - 1000000u) % 65536, 0u);
  }
  EXPECT_TRUE(a->host_base != b->host_base && b->host_base != c->host_base && a->host_base != c->host_base)
      << "no id is in two ranges";
  EXPECT_EQ(ids.Acquire("a"), a) << "a group keeps its range";
}

TEST(IdRangeAllocatorTest, AFullPoolRefusesAndAReleasedRangeIsReused) {
  IdRangeAllocator ids(Small(), "");
  ASSERT_TRUE(ids.Acquire("a") && ids.Acquire("b") && ids.Acquire("c"));
  EXPECT_FALSE(ids.Acquire("d"));
  auto b = ids.Held("b");
  ids.Release("b");
  EXPECT_EQ(ids.Acquire("d"), b);
}

TEST(IdRangeAllocatorTest, RangesOutliveTheNodeProcess) {
  const fs::path dir = fs::temp_directory_path() / ("skiff-ids-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  std::optional<confine::IdRange> b;
  {
    IdRangeAllocator ids(Small(), dir.string());
    ids.Acquire("a");
    b = ids.Acquire("b");
    ids.Release("a");
  }
  IdRangeAllocator again(Small(), dir.string());
  EXPECT_EQ(again.Held("b"), b) << "a running group's containers keep their ids";
  EXPECT_FALSE(again.Held("a"));
  EXPECT_NE(again.Acquire("c"), b) << "a new group never gets a held range";
  fs::remove_all(dir);
}

TEST(IdRangeAllocatorTest, RangesStopBeforeTheLastId) {
  UserNamespaceOptions options = Small();
  options.first_host_id = 4294967295u - 2 * 65536;
  options.ranges = 100;
  IdRangeAllocator ids(options, "");
  int given = 0;
  while (auto range = ids.Acquire("g" + std::to_string(given))) {
    EXPECT_LE(uint64_t{range->host_base} + range->size, 4294967295ull) << "4294967295 is no id";
    ++given;
  }
  EXPECT_EQ(given, 2);
}

TEST(IdRangeAllocatorTest, AGroupTakesASparesRangeAndSparesOfAnEarlierProcessAreLetGo) {
  const fs::path dir = fs::temp_directory_path() / ("skiff-ids-spare-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    IdRangeAllocator ids(Small(), dir.string());
    auto spare = ids.Acquire("standby-1");
    ids.Acquire("g");
    EXPECT_FALSE(ids.Transfer("standby-1", "g")) << "a group with a range keeps it";
    EXPECT_EQ(ids.Transfer("standby-1", "h"), spare);
    EXPECT_FALSE(ids.Held("standby-1"));
    EXPECT_FALSE(ids.Transfer("standby-none", "k"));
    ids.Acquire("standby-2");
  }
  IdRangeAllocator again(Small(), dir.string());
  again.ReleaseStartingWith("standby-");
  EXPECT_FALSE(again.Held("standby-2"));
  EXPECT_TRUE(again.Held("h") && again.Held("g"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace skiff::node
