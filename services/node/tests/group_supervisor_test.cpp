#include "skiff/node/group_supervisor.h"
#include "skiff/containerinstance/v1/container_group.pb.h"

#include <gtest/gtest.h>

#include <algorithm>
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
  std::unique_ptr<ExecProcess> Exec(const std::string&, const std::string&, const ExecSpec&, ExecCallbacks,
                                    std::string* error) override {
    *error = "not in the fake";
    return nullptr;
  }

  void Exit(const std::string& c, int code, bool oom = false) {
    running.erase(c);
    exits[c] = {code, "2026-11-22T00:00:00Z", oom, "", ""};
  }

  int sandboxes_created = 0, sandboxes_deleted = 0;
  std::vector<std::string> starts, signals;
  std::set<std::string> running, ignores_term;
  std::map<std::string, ContainerExit> exits;
};

class RecordingSink : public SupervisorSink {
 public:
  void RestartsChanged(const std::string&, const std::string& c, int count, std::chrono::milliseconds backoff) override {
    restarts[c] = {count, backoff};
  }
  std::map<std::string, RestartRecord> restarts;
  void Event(const SupervisorEvent& e) override { events.push_back(e.container + ":" + e.name); }
  void GroupStateChanged(const std::string&, const std::string& state) override { states.push_back(state); }
  std::vector<std::string> events, states;
};

// Probes answer when the test says so.
class FakeProbes : public ProbeRunner {
 public:
  void Start(const std::string& key, const std::string&, const std::string&, const ProbeSpec&) override {
    started.push_back(key);
    pending.insert(key);
  }
  std::optional<ProbeResult> Poll(const std::string& key) override {
    if (!pending.count(key) || !answer) return std::nullopt;
    pending.erase(key);
    return answer;
  }
  void Forget(const std::string& key) override { pending.erase(key); }
  std::vector<std::string> started;
  std::set<std::string> pending;
  std::optional<ProbeResult> answer;
};

ContainerLaunch C(const std::string& name) {
  ContainerLaunch launch;
  launch.container_name = name;
  return launch;
}

struct SupervisorTest : ::testing::Test {
  FakeRuntime runtime;
  RecordingSink sink;
  FakeProbes probes;
  std::map<std::string, ProbeSpec> liveness, readiness;
  std::map<std::string, RestartRecord> restored;
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
    plan.liveness = liveness;
    plan.restored_restarts = restored;
    plan.readiness = readiness;
    supervisor = std::make_unique<GroupSupervisor>(plan, runtime, sink, &probes);
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

ProbeSpec Probe(int initial_delay, int period, int failure_threshold, int success_threshold = 1) {
  ProbeSpec spec;
  spec.kind = ProbeSpec::Kind::kTcpSocket;
  spec.port = 80;
  spec.initial_delay = std::chrono::seconds(initial_delay);
  spec.period = std::chrono::seconds(period);
  spec.failure_threshold = failure_threshold;
  spec.success_threshold = success_threshold;
  return spec;
}

TEST_F(SupervisorTest, LivenessProbeWaitsForItsInitialDelayThenRunsEveryPeriod) {
  liveness["web"] = Probe(5, 10, 3);
  Make(RestartPolicy::kAlways, {}, {"web"});
  Tick();
  Tick(4s);
  EXPECT_TRUE(probes.started.empty());
  Tick(1s);
  ASSERT_EQ(probes.started.size(), 1u);
  probes.answer = ProbeResult{true, ""};
  Tick();      // answer taken: next one in 10 s
  Tick(9s);
  EXPECT_EQ(probes.started.size(), 1u);
  Tick(1s);
  EXPECT_EQ(probes.started.size(), 2u);
}

TEST_F(SupervisorTest, FailedLivenessRestartsTheContainerAfterTheThreshold) {
  liveness["web"] = Probe(0, 10, 3);
  Make(RestartPolicy::kAlways, {}, {"web"});
  runtime.ignores_term.insert("web");
  probes.answer = ProbeResult{false, "dial tcp 127.0.0.1:80: connection refused"};
  Tick();        // started; probe due
  for (int i = 0; i < 3; ++i) {
    Tick();      // probe starts
    Tick();      // fails
    if (i < 2) Tick(10s);
  }
  EXPECT_EQ(std::count(sink.events.begin(), sink.events.end(), "web:Unhealthy"), 3);
  EXPECT_EQ(runtime.signals, (std::vector<std::string>{"web:15"}));
  Tick(5s);      // the grace period is over: SIGKILL
  EXPECT_EQ(runtime.signals, (std::vector<std::string>{"web:15", "web:9"}));
  Tick();        // reaped: back-off, then a fresh run with fresh probes
  EXPECT_EQ(supervisor->Containers().at("web").restart_count, 1);
  Tick(10s);
  EXPECT_EQ(runtime.starts.size(), 2u);
  EXPECT_EQ(supervisor->Containers().at("web").state, "Running");
}

TEST_F(SupervisorTest, TwoFailuresBelowTheThresholdDoNotKill) {
  liveness["web"] = Probe(0, 10, 3);
  Make(RestartPolicy::kAlways, {}, {"web"});
  probes.answer = ProbeResult{false, "refused"};
  Tick();
  Tick();
  Tick();
  Tick(10s);
  Tick();
  probes.answer = ProbeResult{true, ""};  // recovers: the count starts over
  Tick(10s);
  Tick();
  probes.answer = ProbeResult{false, "refused"};
  Tick(10s);
  Tick();
  Tick(10s);
  Tick();
  EXPECT_TRUE(runtime.signals.empty());
}

TEST_F(SupervisorTest, ReadinessNeedsItsSuccessThresholdAndNeverRestarts) {
  readiness["web"] = Probe(0, 1, 1, 2);
  Make(RestartPolicy::kAlways, {}, {"web"});
  Tick();
  EXPECT_FALSE(supervisor->Containers().at("web").ready);
  probes.answer = ProbeResult{true, ""};
  Tick();
  Tick();
  EXPECT_FALSE(supervisor->Containers().at("web").ready);  // one success of two
  Tick(1s);
  Tick();
  EXPECT_TRUE(supervisor->Containers().at("web").ready);
  probes.answer = ProbeResult{false, "HTTP probe failed with statuscode: 503"};
  Tick(1s);
  Tick();
  EXPECT_FALSE(supervisor->Containers().at("web").ready);
  EXPECT_TRUE(runtime.signals.empty());
  EXPECT_EQ(sink.events.back(), "web:Unhealthy");
}

TEST_F(SupervisorTest, WithoutAReadinessProbeARunningContainerIsReady) {
  Make(RestartPolicy::kAlways, {}, {"web"});
  Tick();
  EXPECT_TRUE(supervisor->Containers().at("web").ready);
  runtime.Exit("web", 1);
  Tick();
  EXPECT_FALSE(supervisor->Containers().at("web").ready);
}

TEST_F(SupervisorTest, RestartCountAndBackOffCarryOverANodeRestart) {
  restored["web"] = {2, 20s};  // what the node saved before it restarted
  Make(RestartPolicy::kAlways, {}, {"web"}, /*adopt=*/true);
  runtime.running.insert("web");  // still running under its shim
  Tick();
  EXPECT_EQ(runtime.starts.size(), 0u);  // adopted, not rerun
  EXPECT_EQ(supervisor->Containers().at("web").restart_count, 2);
  runtime.Exit("web", 1);
  Tick(1s);
  EXPECT_EQ(supervisor->Containers().at("web").restart_count, 3);
  EXPECT_EQ(sink.restarts["web"].backoff, 40s);  // doubled from the saved 20 s, not reset to 10 s
  Tick(39s);
  EXPECT_EQ(runtime.starts.size(), 0u);
  Tick(1s);
  EXPECT_EQ(runtime.starts.size(), 1u);
}

TEST(ProbeModel, KubernetesDefaultsFillWhatACILeavesOut) {
  containerinstance::v1::ContainerProbe model;
  model.mutable_http_get()->set_port(8080);
  model.mutable_http_get()->set_path("healthz");
  ProbeSpec spec = ProbeFromModel(model);
  EXPECT_EQ(spec.kind, ProbeSpec::Kind::kHttpGet);
  EXPECT_EQ(spec.path, "/healthz");
  EXPECT_EQ(spec.period, 10s);
  EXPECT_EQ(spec.timeout, 1s);
  EXPECT_EQ(spec.failure_threshold, 3);
  model.set_period_seconds(0);  // nonsense is clamped, not obeyed
  EXPECT_EQ(ProbeFromModel(model).period, 1s);
}

TEST(ProbeConnect, AClosedPortIsAClearFailure) {
  std::string error;
  // Port 1 on this host's loopback: nothing listens there.
  int fd = ConnectInNamespace("", 1, 500ms, &error);
  EXPECT_EQ(fd, -1);
  EXPECT_NE(error.find("refused"), std::string::npos) << error;
}

}  // namespace
}  // namespace skiff::node
