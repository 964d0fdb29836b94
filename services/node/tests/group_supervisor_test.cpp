#include "skiff/node/group_supervisor.h"

#include <gtest/gtest.h>

#include <csignal>
#include <set>

namespace skiff::node {
namespace {

using namespace std::chrono_literals;

// A runtime whose containers exit when the test says so.
class FakeRuntime : public SandboxRuntime {
 public:
  std::optional<std::string> CreateSandbox(const SandboxSpec&) override {
    ++sandboxes_created;
    return std::nullopt;
  }
  std::optional<std::string> StartContainer(const std::string&, const ContainerLaunch& launch) override {
    starts.push_back(launch.container_name);
    running.insert(launch.container_name);
    exits.erase(launch.container_name);
    return std::nullopt;
  }
  bool IsRunning(const std::string&, const std::string& c) override { return running.count(c) > 0; }
  std::optional<ContainerExit> ExitOf(const std::string&, const std::string& c) override {
    auto it = exits.find(c);
    if (it == exits.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> Signal(const std::string&, const std::string& c, int signal) override {
    signals.push_back(c + ":" + std::to_string(signal));
    if (signal == SIGKILL || !ignores_term.count(c)) Exit(c, 128 + signal);
    return std::nullopt;
  }
  std::optional<std::string> RemoveContainer(const std::string&, const std::string&) override { return std::nullopt; }
  std::optional<std::string> DeleteSandbox(const std::string&) override {
    ++sandboxes_deleted;
    return std::nullopt;
  }
  std::string LogPath(const std::string&, const std::string&) override { return ""; }
  std::string VolumeDir(const std::string&) override { return ""; }
  std::string NetworkNamespace(const std::string&) override { return ""; }

  void Exit(const std::string& c, int code, bool oom = false) {
    running.erase(c);
    exits[c] = {code, "2026-11-22T00:00:00Z", oom};
  }

  int sandboxes_created = 0, sandboxes_deleted = 0;
  std::vector<std::string> starts, signals;
  std::set<std::string> running, ignores_term;
  std::map<std::string, ContainerExit> exits;
};

class RecordingSink : public SupervisorSink {
 public:
  void Event(const SupervisorEvent& e) override { events.push_back(e.container + ":" + e.name); }
  void GroupStateChanged(const std::string&, const std::string& state) override { states.push_back(state); }
  std::vector<std::string> events, states;
};

ContainerLaunch C(const std::string& name) {
  ContainerLaunch launch;
  launch.container_name = name;
  return launch;
}

struct SupervisorTest : ::testing::Test {
  FakeRuntime runtime;
  RecordingSink sink;
  GroupSupervisor::Clock::time_point t{};
  std::unique_ptr<GroupSupervisor> supervisor;

  void Make(RestartPolicy policy, std::vector<std::string> init, std::vector<std::string> apps, bool adopt = false) {
    GroupPlan plan;
    plan.adopt_existing = adopt;
    plan.sandbox.id = "g1";
    plan.restart_policy = policy;
    for (const auto& n : init) plan.init_containers.push_back(C(n));
    for (const auto& n : apps) plan.containers.push_back(C(n));
    plan.backoff = {10s, 40s, 600s};
    plan.stop_grace = 5s;
    supervisor = std::make_unique<GroupSupervisor>(plan, runtime, sink);
  }
  void Tick(std::chrono::seconds advance = 0s) {
    t += advance;
    supervisor->Tick(t);
  }
};

TEST_F(SupervisorTest, InitContainersRunInOrderBeforeApps) {
  Make(RestartPolicy::kAlways, {"init-a", "init-b"}, {"web", "sidecar"});
  Tick();
  EXPECT_EQ(runtime.starts, (std::vector<std::string>{"init-a"}));
  EXPECT_EQ(supervisor->State(), "Pending");
  runtime.Exit("init-a", 0);
  Tick();
  Tick();
  EXPECT_EQ(runtime.starts, (std::vector<std::string>{"init-a", "init-b"}));
  runtime.Exit("init-b", 0);
  Tick();
  Tick();
  EXPECT_EQ(runtime.starts, (std::vector<std::string>{"init-a", "init-b", "web", "sidecar"}));
  EXPECT_EQ(supervisor->State(), "Running");
  EXPECT_EQ(supervisor->Containers().at("init-a").detail, "Completed");
}

TEST_F(SupervisorTest, FailingInitContainerWithNeverFailsTheGroup) {
  Make(RestartPolicy::kNever, {"init"}, {"web"});
  Tick();
  runtime.Exit("init", 2);
  Tick();
  Tick(60s);
  EXPECT_EQ(runtime.starts, (std::vector<std::string>{"init"}));
  EXPECT_EQ(supervisor->State(), "Failed");
}

TEST_F(SupervisorTest, NeverPolicySucceedsOrFails) {
  Make(RestartPolicy::kNever, {}, {"job"});
  Tick();
  runtime.Exit("job", 0);
  Tick();
  EXPECT_EQ(supervisor->State(), "Succeeded");
  EXPECT_EQ(supervisor->Containers().at("job").exit_code, 0);

  Make(RestartPolicy::kNever, {}, {"job"});
  Tick();
  runtime.Exit("job", 1);
  Tick();
  EXPECT_EQ(supervisor->State(), "Failed");
}

TEST_F(SupervisorTest, OnFailureRestartsWithGrowingBackOff) {
  Make(RestartPolicy::kOnFailure, {}, {"app"});
  Tick();
  runtime.Exit("app", 1);
  Tick();
  EXPECT_EQ(supervisor->Containers().at("app").detail, "CrashLoopBackOff");
  EXPECT_EQ(supervisor->State(), "Running");  // it will restart
  Tick(9s);
  EXPECT_EQ(runtime.starts.size(), 1u);  // still backing off
  Tick(1s);
  EXPECT_EQ(runtime.starts.size(), 2u);
  runtime.Exit("app", 1);
  Tick();
  Tick(19s);
  EXPECT_EQ(runtime.starts.size(), 2u);  // back-off doubled to 20 s
  Tick(1s);
  EXPECT_EQ(runtime.starts.size(), 3u);
  EXPECT_EQ(supervisor->Containers().at("app").restart_count, 2);
  runtime.Exit("app", 0);  // success ends OnFailure
  Tick();
  Tick(100s);
  EXPECT_EQ(runtime.starts.size(), 3u);
  EXPECT_EQ(supervisor->State(), "Succeeded");
}

TEST_F(SupervisorTest, OomKillIsReported) {
  Make(RestartPolicy::kNever, {}, {"hog"});
  Tick();
  runtime.Exit("hog", 137, true);
  Tick();
  EXPECT_EQ(supervisor->Containers().at("hog").detail, "OOMKilled");
  EXPECT_EQ(supervisor->Containers().at("hog").exit_code, 137);
  EXPECT_NE(std::find(sink.events.begin(), sink.events.end(), "hog:OOMKilled"), sink.events.end());
}

TEST_F(SupervisorTest, StopSendsTermThenKillAfterGrace) {
  Make(RestartPolicy::kAlways, {}, {"polite", "stubborn"});
  runtime.ignores_term.insert("stubborn");
  Tick();
  supervisor->Stop(t);
  EXPECT_EQ(runtime.signals, (std::vector<std::string>{"polite:15", "stubborn:15"}));
  Tick(4s);
  EXPECT_EQ(runtime.signals.size(), 2u);
  Tick(1s);
  EXPECT_EQ(runtime.signals.back(), "stubborn:9");
  Tick();
  EXPECT_EQ(supervisor->State(), "Stopped");
  Tick(100s);
  EXPECT_EQ(runtime.starts.size(), 2u);  // Always does not restart a stopped group
}

TEST_F(SupervisorTest, DeleteRemovesTheSandbox) {
  Make(RestartPolicy::kAlways, {}, {"web"});
  Tick();
  supervisor->Delete(t);
  Tick();
  EXPECT_TRUE(supervisor->Deleted());
  EXPECT_EQ(runtime.sandboxes_deleted, 1);
}

TEST_F(SupervisorTest, AContainerThatEndedWhileTheNodeWasAwayIsNotRunAgain) {
  runtime.Exit("job", 0);  // exit recorded by its shim while no node watched
  Make(RestartPolicy::kNever, {}, {"job"}, true);
  Tick();
  Tick();
  EXPECT_TRUE(runtime.starts.empty());
  EXPECT_EQ(supervisor->State(), "Succeeded");
}

TEST_F(SupervisorTest, ReadoptsWhatAlreadyRuns) {
  runtime.running.insert("web");  // still running from before a node restart
  Make(RestartPolicy::kAlways, {}, {"web"}, true);
  Tick();
  EXPECT_TRUE(runtime.starts.empty());
  EXPECT_EQ(supervisor->State(), "Running");
}

}  // namespace
}  // namespace skiff::node
