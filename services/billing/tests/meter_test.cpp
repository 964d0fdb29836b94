#include <gtest/gtest.h>

#include "skiff/billing/meter.h"
#include "skiff/billing/price_sheet.h"

namespace skiff::billing {
namespace {

constexpr Millis kT0 = 1'800'000'000'000;  // a fixed instant; tests count from here

Signal Make(SignalKind kind, const std::string& id, Millis at_seconds, int64_t generation = 1,
            const std::string& reason = "") {
  Signal s;
  s.kind = kind;
  s.event_id = id;
  s.at = kT0 + at_seconds * 1000;
  s.placement_generation = generation;
  s.node_id = "node-a";
  s.reason = reason;
  return s;
}

Signal Spec(const std::string& id, Millis at_seconds, double vcpu, double memory_gb, bool spot = false) {
  Signal s = Make(SignalKind::kSpec, id, at_seconds, 0);
  s.subscription_id = "sub";
  s.resource_group = "rg";
  s.name = "web";
  s.resources = {vcpu, memory_gb, 0, spot};
  return s;
}

class MeterTest : public ::testing::Test {
 protected:
  std::vector<Interval> Feed(const Signal& signal, Millis received_seconds = 1'000'000) {
    auto closed = meter_.Apply(group_, signal, kT0 + received_seconds * 1000);
    all_.insert(all_.end(), closed.begin(), closed.end());
    return closed;
  }
  double BilledSeconds() const {
    double total = 0;
    for (const auto& i : all_) total += static_cast<double>(i.end - i.start) / 1000.0;
    return total;
  }
  Meter meter_;
  GroupMeter group_ = [] {
    GroupMeter meter;
    meter.group_id = "g1";
    return meter;
  }();
  std::vector<Interval> all_;
};

TEST_F(MeterTest, BillsFromFirstStartToStop) {
  Feed(Spec("e0", 0, 1, 1.5));
  Feed(Make(SignalKind::kPull, "e1", 1));  // default rule: pulls are free
  EXPECT_FALSE(group_.open_since);
  Feed(Make(SignalKind::kStart, "e2", 10));
  Feed(Make(SignalKind::kStart, "e3", 12));  // a second container: already billing
  auto closed = Feed(Make(SignalKind::kStop, "e4", 70, 1, "Succeeded"));
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].start, kT0 + 10'000);
  EXPECT_EQ(closed[0].end, kT0 + 70'000);
  EXPECT_EQ(closed[0].start_event_id, "e2");
  EXPECT_EQ(closed[0].end_event_id, "e4");
  EXPECT_EQ(closed[0].end_reason, "Succeeded");
  EXPECT_DOUBLE_EQ(closed[0].resources.vcpu, 1);
  EXPECT_DOUBLE_EQ(closed[0].resources.memory_gb, 1.5);
}

TEST_F(MeterTest, AciRuleBillsFromThePull) {
  MeterOptions options;
  options.bill_from_pull = true;
  meter_ = Meter(options);
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kPull, "e1", 2));
  Feed(Make(SignalKind::kStart, "e2", 10));
  Feed(Make(SignalKind::kStop, "e3", 20, 1, "Stopped"));
  EXPECT_DOUBLE_EQ(BilledSeconds(), 18);
}

TEST_F(MeterTest, StoppedTimeIsNotBilled) {
  Feed(Spec("e0", 0, 2, 4));
  Feed(Make(SignalKind::kStart, "e1", 0));
  Feed(Make(SignalKind::kStop, "e2", 100, 1, "Stopped"));
  Feed(Make(SignalKind::kStart, "e3", 500));
  Feed(Make(SignalKind::kStop, "e4", 530, 1, "Stopped"));
  ASSERT_EQ(all_.size(), 2u);
  EXPECT_DOUBLE_EQ(BilledSeconds(), 130);
}

TEST_F(MeterTest, StopThatOvertakesItsStartIsBilledWhenTheStartArrives) {
  Feed(Spec("e0", 0, 1, 1));
  EXPECT_TRUE(Feed(Make(SignalKind::kStop, "stop", 40, 1, "Succeeded")).empty());
  auto closed = Feed(Make(SignalKind::kStart, "start", 10));
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].start, kT0 + 10'000);
  EXPECT_EQ(closed[0].end, kT0 + 40'000);
  EXPECT_EQ(closed[0].end_event_id, "stop");
  EXPECT_FALSE(group_.open_since);
}

TEST_F(MeterTest, StopWithoutStartBillsNothing) {
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kStop, "stop", 40, 1, "Failed"));
  EXPECT_TRUE(all_.empty());
  // A later run is billed normally.
  Feed(Make(SignalKind::kStart, "start", 60));
  Feed(Make(SignalKind::kStop, "stop2", 70, 1, "Stopped"));
  EXPECT_DOUBLE_EQ(BilledSeconds(), 10);
}

TEST_F(MeterTest, LateStopOfAnEarlierRunIsIgnored) {
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kStart, "s1", 0));
  Feed(Make(SignalKind::kStop, "t1", 10, 1, "Stopped"));
  Feed(Make(SignalKind::kStart, "s2", 20));
  Feed(Make(SignalKind::kStop, "t0", 5, 1, "Stopped"));  // older than the open run
  EXPECT_TRUE(group_.open_since);
  Feed(Make(SignalKind::kStart, "s0", 3));               // a start older than what is billed
  Feed(Make(SignalKind::kStop, "t2", 30, 1, "Stopped"));
  EXPECT_DOUBLE_EQ(BilledSeconds(), 20);
}

TEST_F(MeterTest, StaleCopyIsIgnoredAndTheNewCopyReplacesTheOld) {
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kStart, "a1", 0, 1));
  // Drained: the new copy starts at 50 while the old still runs; bill the group once.
  auto closed = Feed(Make(SignalKind::kStart, "b1", 50, 2));
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].end_reason, "Replaced");
  EXPECT_EQ(closed[0].end, kT0 + 50'000);
  Feed(Make(SignalKind::kStop, "a2", 55, 1, "Removed"));  // the old copy's removal
  EXPECT_TRUE(group_.open_since);
  Feed(Make(SignalKind::kStop, "b2", 80, 2, "Stopped"));
  EXPECT_DOUBLE_EQ(BilledSeconds(), 80);
}

TEST_F(MeterTest, LostCopyIsBilledUntilItsLastEvidence) {
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kStart, "s", 0, 1));
  Meter::Seen(group_, 1, kT0 + 30'000);
  Meter::Seen(group_, 0, kT0 + 90'000);  // another generation's evidence does not count
  auto closed = Feed(Make(SignalKind::kLost, "lost", 100, 2, "NodeLost"));
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].end, kT0 + 30'000);
  EXPECT_EQ(closed[0].end_reason, "NodeLost");
  // The replacement copy is billed from its own start.
  Feed(Make(SignalKind::kStart, "s2", 120, 2));
  Feed(Make(SignalKind::kStop, "t2", 130, 2, "Stopped"));
  EXPECT_DOUBLE_EQ(BilledSeconds(), 40);
}

TEST_F(MeterTest, ResizeSplitsTheInterval) {
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kStart, "s", 0));
  Feed(Spec("e1", 60, 2, 4));
  Feed(Spec("e2", 70, 2, 4));  // tags only: no split
  Feed(Make(SignalKind::kStop, "t", 100, 1, "Stopped"));
  ASSERT_EQ(all_.size(), 2u);
  EXPECT_DOUBLE_EQ(all_[0].resources.vcpu, 1);
  EXPECT_EQ(all_[0].end, kT0 + 60'000);
  EXPECT_DOUBLE_EQ(all_[1].resources.vcpu, 2);
  EXPECT_EQ(all_[1].start, kT0 + 60'000);
  EXPECT_EQ(all_[1].end, kT0 + 100'000);
}

TEST_F(MeterTest, ClockAheadCannotBillTheFuture) {
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kStart, "s", 0), 0);
  // The node's clock says 3600 s; billing received it at 10 s: clamped to 10 s + 5 s skew.
  Feed(Make(SignalKind::kStop, "t", 3600), 10);
  EXPECT_DOUBLE_EQ(BilledSeconds(), 15);
}

TEST_F(MeterTest, SkewBetweenNodesNeverBillsASecondTwice) {
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kStart, "a", 0, 1));
  Feed(Make(SignalKind::kStop, "b", 100, 1, "Stopped"));
  // The next copy's node runs 20 s behind: its start reads 80 s.
  Feed(Make(SignalKind::kStart, "c", 80, 2));
  Feed(Make(SignalKind::kStop, "d", 150, 2, "Stopped"));
  ASSERT_EQ(all_.size(), 2u);
  EXPECT_EQ(all_[1].start, kT0 + 100'000);
  EXPECT_DOUBLE_EQ(BilledSeconds(), 150);
}

TEST_F(MeterTest, DeleteClosesAndNothingAfterReopens) {
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kStart, "s", 0));
  Feed(Make(SignalKind::kDeleted, "del", 42, 0, "Deleted"));
  Feed(Make(SignalKind::kStart, "late", 50));
  EXPECT_FALSE(group_.open_since);
  EXPECT_DOUBLE_EQ(BilledSeconds(), 42);
  EXPECT_TRUE(group_.deleted);
}

TEST_F(MeterTest, StartThatArrivesAfterTheDeleteIsBilledUpToTheDelete) {
  Feed(Spec("e0", 0, 1, 1));
  Feed(Make(SignalKind::kDeleted, "del", 42, 0, "Deleted"));
  Feed(Make(SignalKind::kStart, "s", 30));
  EXPECT_DOUBLE_EQ(BilledSeconds(), 12);
}

TEST(PriceSheetTest, PriceChangeMidIntervalChargesEachSecondAtItsPrice) {
  PriceSheet prices("USD", {{kT0, {0.001, 0.0001, 0}, {0.0003, 0.00003, 0}},
                            {kT0 + 60'000, {0.002, 0.0002, 0}, {0.0006, 0.00006, 0}}});
  Resources regular{2, 4, 0, false};
  Charge charge = prices.ChargeFor(regular, kT0 + 30'000, kT0 + 90'000);
  EXPECT_DOUBLE_EQ(charge.seconds, 60);
  EXPECT_DOUBLE_EQ(charge.vcpu_seconds, 120);
  EXPECT_DOUBLE_EQ(charge.gb_seconds, 240);
  EXPECT_NEAR(charge.cost, 30 * (2 * 0.001 + 4 * 0.0001) + 30 * (2 * 0.002 + 4 * 0.0002), 1e-12);
  Resources spot{2, 4, 0, true};
  EXPECT_NEAR(prices.ChargeFor(spot, kT0, kT0 + 10'000).cost, 10 * (2 * 0.0003 + 4 * 0.00003), 1e-12);
  // Before the first version, the first prices apply.
  EXPECT_NEAR(prices.ChargeFor(regular, kT0 - 10'000, kT0).cost, 10 * (2 * 0.001 + 4 * 0.0001), 1e-12);
  EXPECT_DOUBLE_EQ(prices.ChargeFor(regular, kT0, kT0).cost, 0);
}

TEST(PriceSheetTest, ParsesVersionsAndRejectsBadLines) {
  auto prices = PriceSheet::Parse("USD",
                                  "# ACI-like list prices\n"
                                  "2026-01-01T00:00:00Z Regular 0.0000135 0.0000015 0.0003\n"
                                  "2026-01-01T00:00:00Z Spot 0.00000405 0.00000045 0.00009\n"
                                  "2026-06-01T00:00:00Z Regular 0.000012 0.0000013 0.0003\n");
  ASSERT_EQ(prices.versions().size(), 2u);
  EXPECT_DOUBLE_EQ(prices.versions()[1].regular.vcpu_second, 0.000012);
  EXPECT_DOUBLE_EQ(prices.versions()[1].spot.vcpu_second, 0.00000405);  // carried over
  EXPECT_THROW(PriceSheet::Parse("USD", "2026-01-01T00:00:00Z Cheap 1 2 3\n"), std::runtime_error);
  EXPECT_THROW(PriceSheet::Parse("USD", "yesterday Regular 1 2 3\n"), std::runtime_error);
  EXPECT_THROW(PriceSheet::Parse("USD", "2026-01-01T00:00:00Z Regular 1 2\n"), std::runtime_error);
  EXPECT_THROW(PriceSheet::Parse("USD", "# nothing\n"), std::runtime_error);
}

TEST(RollupTest, SplitsAtHourBoundaries) {
  PriceSheet prices("USD", {{0, {1, 0, 0}, {0.3, 0, 0}}});
  const Millis hour = 3'600'000;
  const Millis base = (kT0 / hour) * hour;
  Interval interval;
  interval.group_id = "g";
  interval.resources = {1, 0, 0, false};
  interval.start = base + hour - 600'000;  // 10 minutes before the hour
  interval.end = base + 2 * hour + 60'000;  // 1 minute into the hour after next
  auto rows = Rollup(interval, prices);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].hour, base);
  EXPECT_DOUBLE_EQ(rows[0].charge.seconds, 600);
  EXPECT_DOUBLE_EQ(rows[1].charge.seconds, 3600);
  EXPECT_DOUBLE_EQ(rows[2].charge.seconds, 60);
  EXPECT_DOUBLE_EQ(rows[0].charge.cost + rows[1].charge.cost + rows[2].charge.cost, 4260);
}

}  // namespace
}  // namespace skiff::billing
