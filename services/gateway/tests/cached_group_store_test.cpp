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
  SubscriptionUsage Usage(const std::string& subscription, int64_t now_ms, int64_t cap) override {
    ++usage_reads;
    return FakeGroupStore::Usage(subscription, now_ms, cap);
  }
  int finds = 0;
  int usage_reads = 0;
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

// Usage is read once per usage_ttl; this gateway's creates are counted on top of it.
struct UsageCacheTest : ::testing::Test {
  CountingStore inner;
  std::chrono::steady_clock::time_point now{};
  CachedGroupStore cache{inner, std::chrono::milliseconds(0), 100, [this] { return now; },
                         std::chrono::milliseconds(1000)};
  const int64_t now_ms = 1'795'000'000'000;  // 2026-11-18
  int created = 0;

  bool Create(const std::string& subscription, double cpu) {
    GroupRecord record;
    record.key = {subscription, "rg", "g" + std::to_string(++created)};
    record.group_id = "id" + std::to_string(created);
    record.generation = 1;
    auto* container = record.spec.mutable_properties()->add_containers();
    container->mutable_properties()->mutable_resources()->mutable_requests()->set_cpu(cpu);
    OperationRecord op;
    op.id = "op" + std::to_string(created);
    op.subscription_id = subscription;
    op.kind = "create";
    op.started_at = "2026-11-18T11:06:40.000Z";  // now_ms
    return cache.Insert(record, op, {});
  }
};

TEST_F(UsageCacheTest, ReadsOncePerTtlAndCountsOwnCreates) {
  EXPECT_EQ(cache.Usage("Sub", now_ms, 11).groups, 0);
  ASSERT_TRUE(Create("sub", 1.5));
  ASSERT_TRUE(Create("SUB", 0.5));
  auto usage = cache.Usage("sub", now_ms, 11);
  EXPECT_EQ(inner.usage_reads, 1);
  EXPECT_EQ(usage.groups, 2);
  EXPECT_DOUBLE_EQ(usage.cores, 2.0);
  EXPECT_EQ(usage.creates_last_5_minutes, 2);
  EXPECT_EQ(usage.creates_last_hour, 2);
  EXPECT_EQ(usage.oldest_create_in_5_minutes_ms, now_ms);
  // What the store itself says once the entry is stale is the same.
  now += std::chrono::milliseconds(1001);
  auto fresh = cache.Usage("sub", now_ms, 11);
  EXPECT_EQ(inner.usage_reads, 2);
  EXPECT_EQ(fresh.groups, usage.groups);
  EXPECT_DOUBLE_EQ(fresh.cores, usage.cores);
  EXPECT_EQ(fresh.creates_last_hour, usage.creates_last_hour);
}

TEST_F(UsageCacheTest, CountsStayCappedAndOtherSubscriptionsAreApart) {
  cache.Usage("a", now_ms, 2);
  cache.Usage("b", now_ms, 2);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Create("a", 1));
  EXPECT_EQ(cache.Usage("a", now_ms, 2).creates_last_5_minutes, 2);
  EXPECT_EQ(cache.Usage("a", now_ms, 2).groups, 3);
  EXPECT_EQ(cache.Usage("b", now_ms, 2).groups, 0);
  EXPECT_EQ(inner.usage_reads, 2);
  cache.Usage("a", now_ms, 5);  // another cap: read again
  EXPECT_EQ(inner.usage_reads, 3);
}

TEST_F(UsageCacheTest, UpdatesAndDeletesReadAgain) {
  ASSERT_TRUE(Create("sub", 1));
  cache.Usage("sub", now_ms, 11);
  OperationRecord removal;
  removal.id = "del";
  removal.subscription_id = "sub";
  removal.kind = "delete";
  ASSERT_TRUE(cache.Remove({"sub", "rg", "g1"}, 1, removal, {}));
  EXPECT_EQ(cache.Usage("sub", now_ms, 11).groups, 0);
  EXPECT_EQ(inner.usage_reads, 2);
}

TEST_F(UsageCacheTest, ZeroTtlReadsEveryTime) {
  CachedGroupStore uncached{inner, std::chrono::milliseconds(0), 100, [this] { return now; },
                            std::chrono::milliseconds(0)};
  uncached.Usage("sub", now_ms, 11);
  uncached.Usage("sub", now_ms, 11);
  EXPECT_EQ(inner.usage_reads, 2);
}

}  // namespace
}  // namespace skiff::gateway
