#include "skiff/gateway/cached_group_store.h"

#include <gtest/gtest.h>

#include "fake_group_store.h"

namespace skiff::gateway {
namespace {

class CountingStore : public FakeGroupStore {
 public:
  std::optional<GroupRecord> Find(const GroupKey& key) override {
    ++finds;
    return FakeGroupStore::Find(key);
  }
  int finds = 0;
};

struct CacheTest : ::testing::Test {
  CountingStore inner;
  std::chrono::steady_clock::time_point now{};
  CachedGroupStore cache{inner, std::chrono::milliseconds(1000), 100, [this] { return now; }};
  GroupRecord Record(int64_t generation) {
    GroupRecord r;
    r.key = {"Sub", "RG", "web"};
    r.group_id = "g";
    r.generation = generation;
    return r;
  }
};

TEST_F(CacheTest, RepeatedReadsHitTheCacheUntilTtl) {
  inner.Insert(Record(1), std::nullopt, {});
  EXPECT_TRUE(cache.Find({"sub", "rg", "WEB"}).has_value());
  EXPECT_TRUE(cache.Find({"sub", "rg", "web"}).has_value());
  EXPECT_EQ(inner.finds, 1);
  now += std::chrono::milliseconds(1001);
  cache.Find({"sub", "rg", "web"});
  EXPECT_EQ(inner.finds, 2);
}

TEST_F(CacheTest, OwnWritesAreReadBackAtOnce) {
  EXPECT_FALSE(cache.Find({"Sub", "RG", "web"}).has_value());  // caches the absence
  ASSERT_TRUE(cache.Insert(Record(1), std::nullopt, {}));
  EXPECT_EQ(cache.Find({"Sub", "RG", "web"})->generation, 1);
  ASSERT_TRUE(cache.Update(Record(2), 1, std::nullopt, {}));
  EXPECT_EQ(cache.Find({"Sub", "RG", "web"})->generation, 2);
  ASSERT_TRUE(cache.Remove({"Sub", "RG", "web"}, 2, {}, {}));
  EXPECT_FALSE(cache.Find({"Sub", "RG", "web"}).has_value());
  EXPECT_EQ(inner.finds, 1);
}

TEST_F(CacheTest, FailedWriteDropsTheEntry) {
  inner.Insert(Record(3), std::nullopt, {});  // another replica moved on
  cache.Find({"Sub", "RG", "web"});
  EXPECT_FALSE(cache.Update(Record(2), 1, std::nullopt, {}));
  EXPECT_EQ(cache.Find({"Sub", "RG", "web"})->generation, 3);
  EXPECT_EQ(inner.finds, 2);
}

}  // namespace
}  // namespace skiff::gateway
