#include "skiff/node/id_ranges.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace skiff::node {
namespace {

namespace fs = std::filesystem;

UserNamespaceOptions Small(const std::string& claims_dir = "") {
  UserNamespaceOptions options;
  options.enabled = true;
  options.first_host_id = 1000000;
  options.range_size = 65536;
  options.ranges = 3;
  options.claims_dir = claims_dir;
  return options;
}

struct ClaimsDir {
  fs::path path = fs::temp_directory_path() / ("skiff-ids-" + std::to_string(::getpid()) + "-" +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  ClaimsDir() { fs::remove_all(path); }
  ~ClaimsDir() { fs::remove_all(path); }
};

TEST(IdRangeAllocatorTest, GroupsGetDisjointRangesAboveTheHostsIds) {
  IdRangeAllocator ids(Small(), "node-a");
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
  IdRangeAllocator ids(Small(), "node-a");
  ASSERT_TRUE(ids.Acquire("a") && ids.Acquire("b") && ids.Acquire("c"));
  EXPECT_FALSE(ids.Acquire("d"));
  auto b = ids.Held("b");
  ids.Release("b");
  EXPECT_EQ(ids.Acquire("d"), b);
}

// Two nodes on one host (each its own host tag) share the host's ids: they never hand out the
// same range, even to the same group id.
TEST(IdRangeAllocatorTest, NodesSharingAHostNeverShareARange) {
  ClaimsDir claims;
  IdRangeAllocator a(Small(claims.path.string()), "node-a"), b(Small(claims.path.string()), "node-b");
  auto on_a = a.Acquire("g"), on_b = b.Acquire("g"), other = b.Acquire("h");
  ASSERT_TRUE(on_a && on_b && other);
  EXPECT_NE(on_a, on_b);
  EXPECT_NE(on_a, other);
  EXPECT_FALSE(a.Acquire("k")) << "the host has three ranges, all claimed";
  a.Release("g");
  EXPECT_EQ(b.Acquire("k"), on_a);
}

TEST(IdRangeAllocatorTest, RangesOutliveTheNodeProcess) {
  ClaimsDir claims;
  std::optional<confine::IdRange> b;
  {
    IdRangeAllocator ids(Small(claims.path.string()), "node-a");
    ids.Acquire("a");
    b = ids.Acquire("b");
    ids.Release("a");
  }
  IdRangeAllocator again(Small(claims.path.string()), "node-a");
  EXPECT_EQ(again.Held("b"), b) << "a running group's containers keep their ids";
  EXPECT_FALSE(again.Held("a"));
  EXPECT_NE(again.Acquire("c"), b) << "a new group never gets a held range";
  again.ReleaseUnless([](const std::string& group_id) { return group_id == "c"; });
  EXPECT_FALSE(again.Held("b"));
  EXPECT_TRUE(again.Held("c"));
}

TEST(IdRangeAllocatorTest, AGroupTakesASparesRange) {
  ClaimsDir claims;
  IdRangeAllocator ids(Small(claims.path.string()), "node-a");
  auto spare = ids.Acquire("standby-1");
  ids.Acquire("g");
  EXPECT_FALSE(ids.Transfer("standby-1", "g")) << "a group with a range keeps it";
  EXPECT_EQ(ids.Transfer("standby-1", "h"), spare);
  EXPECT_FALSE(ids.Held("standby-1"));
  EXPECT_FALSE(ids.Transfer("standby-none", "k"));
  IdRangeAllocator again(Small(claims.path.string()), "node-a");
  EXPECT_EQ(again.Held("h"), spare) << "the transfer is on disk";
}

TEST(IdRangeAllocatorTest, RangesStopBeforeTheLastId) {
  UserNamespaceOptions options = Small();
  options.first_host_id = 4294967295u - 2 * 65536;
  options.ranges = 100;
  IdRangeAllocator ids(options, "node-a");
  int given = 0;
  while (auto range = ids.Acquire("g" + std::to_string(given))) {
    EXPECT_LE(uint64_t{range->host_base} + range->size, 4294967295ull) << "4294967295 is no id";
    ++given;
  }
  EXPECT_EQ(given, 2);
}

}  // namespace
}  // namespace skiff::node
