#include "skiff/node/restart_policy.h"

#include <gtest/gtest.h>

namespace skiff::node {
namespace {

using namespace std::chrono_literals;
using Clock = RestartTracker::Clock;

TEST(RestartPolicyTest, NeverAndOnFailure) {
  Clock::time_point t{};
  RestartTracker never(RestartPolicy::kNever, {});
  EXPECT_FALSE(never.Exited(1, t));
  RestartTracker on_failure(RestartPolicy::kOnFailure, {});
  EXPECT_FALSE(on_failure.Exited(0, t));
  EXPECT_TRUE(on_failure.Exited(2, t));
  EXPECT_EQ(on_failure.restart_count(), 1);
}

TEST(RestartPolicyTest, BackOffDoublesUpToTheCapAndResetsAfterAGoodRun) {
  RestartTracker always(RestartPolicy::kAlways, {10s, 40s, 600s});
  Clock::time_point t{};
  always.Started(t);
  EXPECT_EQ(*always.Exited(0, t + 1s), t + 1s + 10s);
  EXPECT_EQ(*always.Exited(0, t + 2s), t + 2s + 20s);
  EXPECT_EQ(*always.Exited(0, t + 3s), t + 3s + 40s);
  EXPECT_EQ(*always.Exited(0, t + 4s), t + 4s + 40s);  // capped
  EXPECT_EQ(always.restart_count(), 4);
  always.Started(t + 100s);
  EXPECT_EQ(*always.Exited(1, t + 800s), t + 800s + 10s);  // ran 700 s: back-off reset
}

TEST(RestartPolicyTest, GroupStates) {
  EXPECT_EQ(GroupState(true, false, false, false, false), "Running");
  EXPECT_EQ(GroupState(false, true, true, false, false), "Running");
  EXPECT_EQ(GroupState(false, false, true, false, false), "Failed");
  EXPECT_EQ(GroupState(false, false, false, false, false), "Succeeded");
  EXPECT_EQ(GroupState(true, false, false, true, false), "Stopped");
  EXPECT_EQ(GroupState(false, false, false, false, true), "Pending");
  EXPECT_EQ(ParseRestartPolicy("OnFailure"), RestartPolicy::kOnFailure);
  EXPECT_EQ(ParseRestartPolicy(""), RestartPolicy::kAlways);
}

}  // namespace
}  // namespace skiff::node
