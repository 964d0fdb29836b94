// The node service end to end over real NATS: skiff-node and skiff-imagecache processes, a
// docker-registry with the busybox test images, runc. Groups go in as RunGroupRequests; what
// comes out is checked on JetStream and on disk.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <condition_variable>
#include <map>
#include <set>
#include <regex>
#include <sstream>
#include <mutex>
#include <thread>

#include "skiff/bus/nats_bus.h"
#include "skiff/crypto/crypto.h"
#include "skiff/secrets/group_secrets.h"
#include "skiff/node/id_ranges.h"
#include "skiff/node/sandbox_runtime.h"
#include "skiff/node/v1/node.pb.h"

namespace skiff::node {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string Shell(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  if (::pclose(pipe) != 0) ADD_FAILURE() << command << ":\n" << output;
  return output;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

pid_t Spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    FILE* out = std::fopen(log.c_str(), "w");
    ::dup2(fileno(out), 1);
    ::dup2(fileno(out), 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

class Stack : public ::testing::Environment {
 public:
  void SetUp() override {
    dir = fs::path("/tmp") / ("skiff-it-node-" + std::to_string(::getpid()));
    Shell(std::string(SKIFF_SOURCE_DIR) + "/integration-tests/infra.sh start " + dir.string() + " --registry");
    std::ifstream env(dir / "infra.env");
    for (std::string line; std::getline(env, line);) values[line.substr(0, line.find('='))] = line.substr(line.find('=') + 1);
    key = crypto::Base64Encode(crypto::RandomBytes(32));
    std::map<std::string, std::string> common{{"SKIFF_BUS_URL", values["NATS_URL"]}, {"SKIFF_LOG_LEVEL", "warn"}};
    auto cache_env = common;
    cache_env["SKIFF_IMAGECACHE_ROOT"] = (dir / "imagecache").string();
    cache_env["SKIFF_IMAGECACHE_WRITABLE_LAYER_MAX_MB"] = "8";
    cache_env["SKIFF_IMAGECACHE_NODE_ID"] = "it-node";
    cache_env["SKIFF_IMAGECACHE_SECRET_KEY"] = key;
    imagecache = Spawn({SKIFF_IMAGECACHE_BIN, "serve"}, cache_env, (dir / "imagecache.log").string());
    auto node_env = common;
    node_env["SKIFF_NODE_ROOT"] = (dir / "node").string();
    node_env["SKIFF_NODE_NODE_ID"] = "it-node";
    node_env["SKIFF_NODE_SECRET_KEY"] = key;
    node_env["SKIFF_NODE_SECCOMP_PROFILE"] = std::string(SKIFF_SOURCE_DIR) + "/infra/seccomp/default.json";
    node_env["SKIFF_NODE_STOP_GRACE_MS"] = "2000";
    node_env["SKIFF_NODE_HEARTBEAT_MS"] = "200";
    node_env["SKIFF_NODE_USAGE_MS"] = "300";
    node_env["SKIFF_NODE_BACKOFF_INITIAL_MS"] = "400";
    node_env["SKIFF_NODE_STANDBY_SANDBOXES"] = "2";
    node_env["SKIFF_NODE_HOST_TAG"] = "skiff-nit";
    node_env["SKIFF_NODE_ID_RANGE_CLAIMS"] = (dir / "id-ranges").string();
    node_env["SKIFF_NODE_GIT_INSECURE_HOSTS"] = "127.0.0.1";
    node_env["SKIFF_NODE_GIT_MAX_MB"] = "2";
    node_env["SKIFF_NODE_EMPTY_DIR_MAX_MB"] = "4";
#ifdef SKIFF_GUEST_KERNEL
    node_env["SKIFF_NODE_MICROVM"] = "true";
    node_env["SKIFF_NODE_MICROVM_KERNEL"] = SKIFF_GUEST_KERNEL;
    node_env["SKIFF_NODE_MICROVM_INITRAMFS"] = SKIFF_GUEST_INITRAMFS;
#endif
    this->node_env = node_env;
    StartNode();
    bus = std::make_unique<bus::NatsBus>(values["NATS_URL"], "node-it");
    bus->EnsureStream({"SKIFF_EVENTS", {"skiff.events.>"}, std::chrono::seconds(120), true});
  }
  void StartNode() { node = Spawn({SKIFF_NODE_BIN, "serve"}, node_env, (dir / "node.log").string()); }
  void KillNode() {
    ::kill(node, SIGKILL);
    ::waitpid(node, nullptr, 0);
  }
  void TearDown() override {
    for (pid_t pid : {node, imagecache}) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
    bus.reset();
    Shell("umount -l " + (dir / "node/microvm/sandboxes").string() + "/*/containers/*/rootfs 2>/dev/null; true");
    Shell("umount -l " + (dir / "imagecache/containers").string() + "/*/rootfs 2>/dev/null; true");
    Shell(std::string(SKIFF_SOURCE_DIR) + "/integration-tests/infra.sh stop " + dir.string());
  }
  fs::path dir;
  std::map<std::string, std::string> values;
  std::string key;
  pid_t imagecache = 0, node = 0;
  std::map<std::string, std::string> node_env;
  std::unique_ptr<bus::NatsBus> bus;
};

Stack* stack = nullptr;

struct NodeServiceTest : ::testing::Test {
  std::string group_id = crypto::NewUuid();
  std::unique_ptr<bus::PullConsumer> events;
  std::vector<v1::ContainerEvent> seen;

  void SetUp() override {
    events = stack->bus->PullSubscribe("SKIFF_EVENTS", "skiff.events.>", "node-it-" + group_id.substr(0, 8));
  }

  v1::NodeCommandReply Send(const std::string& verb, const google::protobuf::Message& request) {
    v1::NodeCommandReply reply;
    for (int i = 0; i < 100; ++i) {
      auto answer = stack->bus->Request("skiff.node.it-node." + verb, request.SerializeAsString(), 120s);
      if (answer && reply.ParseFromString(*answer)) return reply;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "no answer to " << verb;
    return reply;
  }

  // Secrets in `json` are plain; they are sealed as the gateway seals them, for `sealed_for`
  // (subscription, group id; by default this very group).
  v1::NodeCommandReply Run(const std::string& json, const std::string& subscription = "s",
                           std::optional<std::pair<std::string, std::string>> sealed_for = std::nullopt) {
    v1::RunGroupRequest request;
    request.mutable_group()->set_group_id(group_id);
    request.mutable_group()->set_name("it-group");
    request.mutable_group()->set_subscription_id(subscription);
    request.mutable_group()->set_resource_group("rg");
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, request.mutable_spec()).ok()) << json;
    const auto [seal_subscription, seal_group] = sealed_for.value_or(std::make_pair(subscription, group_id));
    secrets::SealAll(*request.mutable_spec(), crypto::SecretBox::FromBase64Key(stack->key), seal_subscription, seal_group);
    return Send("run", request);
  }

  v1::NodeCommandReply Command(const std::string& verb) {
    v1::GroupCommandRequest request;
    request.mutable_group()->set_group_id(group_id);
    return Send(verb, request);
  }

  // Waits for an event of this group with `name` (and, for StateChanged, `state`).
  bool WaitFor(const std::string& name, const std::string& state = "", std::chrono::seconds timeout = 60s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto matches = [&](const v1::ContainerEvent& e) {
      return e.name() == name && (state.empty() || e.group_state() == state);
    };
    for (const auto& e : seen) {
      if (matches(e)) return true;
    }
    while (std::chrono::steady_clock::now() < deadline) {
      bool found = false;
      for (auto& message : events->Fetch(100, 300ms)) {  // record and ack the whole batch
        v1::ContainerEvent event;
        message.Ack();
        if (!event.ParseFromString(message.Data()) || event.group().group_id() != group_id) continue;
        seen.push_back(event);
        found |= matches(event);
      }
      if (found) return true;
    }
    return false;
  }

  // A stream session as the gateway runs one: subscribe to the output, then ask the nodes.
  struct StreamResult {
    v1::StreamReply reply;
    std::string output;
    bool ended = false;
    int exit_code = -1;
    uint64_t last_seq = 0;
    bool in_order = true;
  };
  StreamResult Stream(const std::string& verb, google::protobuf::Message& request, const std::string& session,
                      const std::vector<v1::StreamInput>& inputs = {}, std::chrono::seconds timeout = 30s,
                      bool inputs_after_first_output = false) {
    StreamResult result;
    std::mutex mutex;
    std::condition_variable changed;
    auto sub = stack->bus->Subscribe("skiff.stream.it-node." + session + ".out", [&](const std::string&, const std::string& data) {
      v1::StreamOutput out;
      if (!out.ParseFromString(data)) return;
      std::lock_guard lock(mutex);
      result.in_order &= out.seq() == result.last_seq + 1;
      result.last_seq = out.seq();
      result.output += out.data();
      if (out.ended()) {
        result.ended = true;
        result.exit_code = out.exit_code();
      }
      changed.notify_all();
    });
    auto answer = stack->bus->Request("skiff.node.it-node." + verb, request.SerializeAsString(), 5s);
    if (!answer || !result.reply.ParseFromString(*answer) || !result.reply.ok()) return result;
    if (inputs_after_first_output) {
      std::unique_lock lock(mutex);
      changed.wait_for(lock, timeout, [&] { return !result.output.empty(); });
    }
    for (const auto& input : inputs) {
      stack->bus->PublishCore("skiff.stream.it-node." + session + ".in", input.SerializeAsString());
      // A resize has no answer: give runc a moment to pass it on before the next input.
      if (inputs_after_first_output) std::this_thread::sleep_for(300ms);
    }
    std::unique_lock lock(mutex);
    changed.wait_for(lock, timeout, [&] { return result.ended; });
    return result;
  }

  // Usage reports of this group's containers on skiff.node.usage.it-node, gathered for up to 10 s until
  // `enough` of them came.
  std::vector<v1::ContainerUsage> UsageSamples(size_t enough) {
    std::mutex mutex;
    std::vector<v1::ContainerUsage> samples;
    auto listener = stack->bus->Serve("skiff.node.usage.it-node", "it-usage-" + group_id.substr(0, 8),
                                      [&](const std::string&, const std::string& data) {
      v1::NodeUsage usage;
      if (usage.ParseFromString(data)) {
        std::lock_guard lock(mutex);
        for (const auto& c : usage.containers()) {
          if (c.group().group_id() == group_id) samples.push_back(c);
        }
      }
      return std::optional<std::string>();
    }, 1);
    for (int i = 0; i < 100; ++i) {
      std::this_thread::sleep_for(100ms);
      std::lock_guard lock(mutex);
      if (samples.size() >= enough) break;
    }
    listener.reset();
    std::lock_guard lock(mutex);
    return samples;
  }

  std::string LogOf(const std::string& container) {
    return ReadFile((stack->dir / "node/sandboxes" / group_id / "containers" / container / "log").string());
  }
  std::string Image(const std::string& name) { return stack->values["REGISTRY"] + "/skiff/" + name + ":1"; }
};

TEST_F(NodeServiceTest, RunsAGroupToCompletion) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"hello",
    "properties":{"image":")" + Image("hello") + R"(","resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  EXPECT_TRUE(WaitFor("Pulling"));
  EXPECT_TRUE(WaitFor("Pulled"));
  EXPECT_TRUE(WaitFor("Started"));
  EXPECT_TRUE(WaitFor("StateChanged", "Succeeded"));
  EXPECT_NE(LogOf("hello").find("stdout hello from skiff"), std::string::npos) << LogOf("hello");
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted"));
  EXPECT_FALSE(fs::exists(stack->dir / "node/sandboxes" / group_id));
}

// The image pull starts before the sandbox, network and volumes are set up (they overlap), so a
// group whose set-up fails has already asked for its image; the node gives the hold back.
TEST_F(NodeServiceTest, ThePullStartsBeforeTheSetUpAndAFailedSetUpStillEnds) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"hello",
    "properties":{"image":")" + Image("hello") + R"(","resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}},
    "volumeMounts":[{"name":"src","mountPath":"/src"}]}}],
    "volumes":[{"name":"src","gitRepo":{"repository":"http://127.0.0.1:1/none.git"}}]}})");
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error_code(), "VolumeFailed") << reply.error_message();
  EXPECT_TRUE(WaitFor("Pulling"));
  EXPECT_TRUE(WaitFor("Failed"));
  EXPECT_FALSE(fs::exists(stack->dir / "node/sandboxes" / group_id));
}

// Spare sandboxes under the node's root: the standby pool.
size_t Spares() {
  size_t count = 0;
  for (const auto& entry : fs::directory_iterator(stack->dir / "node/sandboxes")) {
    count += entry.path().filename().string().rfind("standby-", 0) == 0;
  }
  return count;
}

TEST_F(NodeServiceTest, ANewGroupTakesASandboxFromTheStandbyPoolWhichRefills) {
  for (int i = 0; i < 100 && Spares() < 2; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_EQ(Spares(), 2u);
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"hello",
    "properties":{"image":")" + Image("hello") + R"(","resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("SandboxReady"));
  EXPECT_TRUE(WaitFor("StateChanged", "Succeeded"));
  // The group's own namespace is the spare's, renamed; the pool makes another spare.
  EXPECT_TRUE(fs::exists("/var/run/netns/skiff-nit-" + group_id));
  for (int i = 0; i < 100 && Spares() < 2; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(Spares(), 2u);
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted"));
  EXPECT_FALSE(fs::exists("/var/run/netns/skiff-nit-" + group_id));
}

TEST_F(NodeServiceTest, SecretsAreOpenedOnlyOnTheNode) {
  const std::string token_b64 = crypto::Base64Encode("file-secret-42");
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never",
    "volumes":[{"name":"creds","secret":{"token":")" + token_b64 + R"("}},{"name":"scratch","emptyDir":{}}],
    "containers":[{"name":"app","properties":{"image":")" + Image("httpd") + R"(",
      "command":["/bin/sh","-c","echo env=$API_KEY plain=$PLAIN; cat /secrets/token; echo; ls -l /secrets/token; echo x > /scratch/ok && echo scratch-ok"],
      "environmentVariables":[{"name":"API_KEY","secureValue":")" + "env-secret-7" + R"("},{"name":"PLAIN","value":"p"}],
      "volumeMounts":[{"name":"creds","mountPath":"/secrets"},{"name":"scratch","mountPath":"/scratch"}],
      "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Succeeded"));
  std::string log = LogOf("app");
  EXPECT_NE(log.find("env=env-secret-7 plain=p"), std::string::npos) << log;
  EXPECT_NE(log.find("file-secret-42"), std::string::npos) << log;
  EXPECT_NE(log.find("-r--------"), std::string::npos) << log;
  EXPECT_NE(log.find("scratch-ok"), std::string::npos) << log;
  // No event carries the plain secrets.
  for (const auto& e : seen) EXPECT_EQ(e.message().find("secret-"), std::string::npos) << e.message();
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}


// A repository served over dumb HTTP (git update-server-info) by a python server. `inside`: in
// the group's network namespace, made ahead as the node makes it (owned by a user namespace of
// the group's preferred id range, recorded in its sandbox directory; the node then takes them as
// the group's), so the clone, which runs in the group's namespace, reaches it; otherwise on the
// host's loopback.
struct GitServer {
  fs::path dir = fs::path("/tmp") / ("skiff-git-" + crypto::NewUuid().substr(0, 8));
  std::string netns;
  int port = 0;
  GitServer(const std::string& group_id, bool inside, int port_number) : port(port_number) {
    Shell("set -e; mkdir -p " + dir.string() + "/src " + dir.string() + "/big; cd " + dir.string() + "/src; git init -q;"
          " mkdir site; echo hello-from-the-repo > site/index.html; ln -s / out; ln -s ../.. site/up;"
          " git add -A; git -c user.email=t@t -c user.name=t commit -qm one;"
          " cd ../big; git init -q; head -c 3145728 /dev/urandom > big.bin; git add big.bin;"
          " git -c user.email=t@t -c user.name=t commit -qm big; cd ..;"
          " git clone -q --bare src repo.git; git -C repo.git update-server-info;"
          " git clone -q --bare big big.git; git -C big.git update-server-info");
    std::string prefix;
    if (inside) {
      netns = "skiff-nit-" + group_id;
      const fs::path sandbox = stack->dir / "node/sandboxes" / group_id;
      const confine::IdRange range = IdRangeAllocator(UserNamespaceOptions{}, "").Preferred(group_id);
      fs::create_directories(sandbox);
      EXPECT_EQ(CreateNamespacesInRange(range, (sandbox / "userns").string(), "/var/run/netns/" + netns), std::nullopt);
      std::ofstream(sandbox / "ids") << range.host_base << " " << range.size << "\n";
      prefix = "ip netns exec " + netns + " ";
    }
    Shell(prefix + "sh -c 'cd " + dir.string() + " && exec python3 -m http.server " + std::to_string(port) +
          " --bind 127.0.0.1 >/dev/null 2>&1 &'; for i in $(seq 50); do " + prefix + "bash -c 'exec 3<>/dev/tcp/127.0.0.1/" +
          std::to_string(port) + "' 2>/dev/null && break; sleep 0.1; done");
  }
  ~GitServer() {
    Shell("pkill -f 'http[.]server " + std::to_string(port) + "' ; true");  // [.]: not this shell
    if (!netns.empty()) Shell("ip netns del " + netns + " 2>/dev/null; true");
    fs::remove_all(dir);
  }
  std::string Url(const std::string& repo = "repo.git") const {
    return "http://127.0.0.1:" + std::to_string(port) + "/" + repo;
  }
};

TEST_F(NodeServiceTest, AGitRepoDirectoryIsServedFromBeneathTheClone) {
  GitServer server(group_id, true, 18431);
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"reader",
    "properties":{"image":")" + Image("hello") + R"(","command":["/bin/sh","-c","cat /site/index.html; ls -ln /site"],
    "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}},"volumeMounts":[{"name":"src","mountPath":"/site"}]}}],
    "volumes":[{"name":"src","gitRepo":{"repository":")" + server.Url() + R"(","directory":"site"}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Succeeded"));
  EXPECT_NE(LogOf("reader").find("hello-from-the-repo"), std::string::npos) << LogOf("reader");
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted"));
  EXPECT_FALSE(fs::exists(stack->dir / "node/sandboxes" / group_id));
}

// The repository commits "out -> /" and "site/up -> ../..": a directory through either would
// bind the host's root (or the node's) into the container.
TEST_F(NodeServiceTest, AGitRepoDirectoryThroughACommittedSymlinkIsRefused) {
  int port = 18440;
  for (const char* directory : {"out/etc", "out", "site/up"}) {
    group_id = crypto::NewUuid();  // a failed group's namespace goes with it: a fresh one each
    GitServer server(group_id, true, ++port);
    auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"reader",
      "properties":{"image":")" + Image("hello") + R"(","resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}},
      "volumeMounts":[{"name":"src","mountPath":"/site"}]}}],
      "volumes":[{"name":"src","gitRepo":{"repository":")" + server.Url() + R"(","directory":")" + directory + R"("}}]}})");
    EXPECT_FALSE(reply.ok()) << directory;
    EXPECT_EQ(reply.error_code(), "InvalidVolume") << directory << ": " << reply.error_message();
    EXPECT_NE(reply.error_message().find("leads out"), std::string::npos) << reply.error_message();
    EXPECT_FALSE(fs::exists(stack->dir / "node/sandboxes" / group_id)) << directory;
  }
}

// The clone runs in the group's network namespace: the host's loopback (NATS, Postgres, the
// gateway's private ports) is not reachable from it.
TEST_F(NodeServiceTest, AGitCloneCannotReachTheHostsLoopback) {
  GitServer server(group_id, false, 18433);
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"reader",
    "properties":{"image":")" + Image("hello") + R"(","resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}},
    "volumeMounts":[{"name":"src","mountPath":"/site"}]}}],
    "volumes":[{"name":"src","gitRepo":{"repository":")" + server.Url() + R"("}}]}})");
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error_code(), "VolumeFailed") << reply.error_message();
  EXPECT_NE(reply.error_message().find("connect"), std::string::npos) << reply.error_message();
  EXPECT_TRUE(WaitFor("Failed"));
}

TEST_F(NodeServiceTest, AGitCloneLargerThanTheCapFails) {
  GitServer server(group_id, true, 18434);
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"reader",
    "properties":{"image":")" + Image("hello") + R"(","resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}},
    "volumeMounts":[{"name":"src","mountPath":"/site"}]}}],
    "volumes":[{"name":"src","gitRepo":{"repository":")" + server.Url("big.git") + R"("}}]}})");
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error_code(), "RepositoryTooLarge") << reply.error_message();
  EXPECT_TRUE(WaitFor("Failed"));
  EXPECT_EQ(Shell("ls -A /run/skiff-clones"), "");  // no staging tmpfs is left behind
}

// Names that would leave the share store reach the node only if the gateway were bypassed; the
// node refuses them itself.
// Specs sent straight to the node (no gateway) whose names would leave their stores; `isolation`
// "" or "MicroVM": the node checks them before it picks a runtime.
void ExpectTraversalRefused(NodeServiceTest& test, const std::string& isolation) {
  const std::vector<std::string> volumes = {
      R"({"name":"share","azureFile":{"shareName":"../../..","storageAccountName":"acct","storageAccountKey":"k"}})",
      R"({"name":"share","azureFile":{"shareName":"data","storageAccountName":"../etc","storageAccountKey":"k"}})",
      R"({"name":"share","gitRepo":{"repository":"https://example.test/r.git","directory":"../../.."}})",
      R"({"name":"share","gitRepo":{"repository":"/srv/local-repo"}})",
      R"({"name":"share","gitRepo":{"repository":"--upload-pack=touch /tmp/pwned"}})"};
  const std::string head = R"({"location":"local","properties":{"isolation":")" + isolation +
                           R"(","restartPolicy":"Never","containers":[{"name":"app","properties":{"image":")" +
                           test.Image("hello") + R"(","resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}},)";
  for (const auto& volume : volumes) {
    auto reply = test.Run(head + R"("volumeMounts":[{"name":"share","mountPath":"/data"}]}}],"volumes":[)" + volume + "]}}");
    EXPECT_FALSE(reply.ok()) << volume;
    EXPECT_EQ(reply.error_code(), "InvalidVolume") << isolation << " " << volume << ": " << reply.error_message();
  }
  auto proc = test.Run(head + R"("volumeMounts":[{"name":"scratch","mountPath":"/proc/sys"}]}}],
    "volumes":[{"name":"scratch","emptyDir":{}}]}})");
  EXPECT_EQ(proc.error_code(), "InvalidVolume") << isolation << " " << proc.error_message();
  EXPECT_FALSE(fs::exists("/tmp/pwned"));
  EXPECT_FALSE(fs::exists(stack->dir / "node/shares/acct"));
}

// A sealed value is bound to its subscription and group: copied into another group's spec, the
// node cannot open it, and the group is refused before anything starts.
TEST_F(NodeServiceTest, ASecretSealedForAnotherGroupDoesNotOpen) {
  const std::string spec = R"({"location":"local","properties":{"restartPolicy":"Never",
    "containers":[{"name":"app","properties":{"image":")" + Image("hello") + R"(","command":["/bin/sh","-c","echo $API_KEY"],
      "environmentVariables":[{"name":"API_KEY","secureValue":"stolen"}],
      "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})";
  auto other_group = Run(spec, "s", std::make_pair(std::string("s"), crypto::NewUuid()));
  const bool refused_at_once = !other_group.ok() && other_group.error_code() == "SecretUnavailable";
  EXPECT_TRUE(refused_at_once || WaitFor("StateChanged", "Failed", 30s)) << other_group.error_message();
  if (!refused_at_once) Command("delete");
  group_id = crypto::NewUuid();
  auto other_subscription = Run(spec, "s", std::make_pair(std::string("t"), group_id));
  const bool refused_too = !other_subscription.ok() && other_subscription.error_code() == "SecretUnavailable";
  EXPECT_TRUE(refused_too || WaitFor("StateChanged", "Failed", 30s)) << other_subscription.error_message();
  EXPECT_EQ(LogOf("app").find("stolen"), std::string::npos);
}

TEST_F(NodeServiceTest, TheNodeRefusesShareAndDirectoryNamesThatLeaveTheirStore) { ExpectTraversalRefused(*this, ""); }

// Two subscriptions naming the same account and share never meet, and a later mount needs the
// key the account was first used with.
TEST_F(NodeServiceTest, SharesAreKeyedBySubscriptionAndAccountKey) {
  auto group = [&](const std::string& command, const std::string& key) {
    return R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"app",
      "properties":{"image":")" + Image("hello") + R"(","command":["/bin/sh","-c",")" + command + R"("],
      "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}},"volumeMounts":[{"name":"share","mountPath":"/data"}]}}],
      "volumes":[{"name":"share","azureFile":{"shareName":"common","storageAccountName":"sharedacct",
      "storageAccountKey":")" + key + R"("}}]}})";
  };
  auto first = Run(group("echo tenant-a-data > /data/file; echo wrote", "key-a"), "sub-a");
  ASSERT_TRUE(first.ok()) << first.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Succeeded"));
  ASSERT_TRUE(Command("delete").ok());
  ASSERT_TRUE(WaitFor("Deleted"));

  group_id = crypto::NewUuid();
  auto other = Run(group("cat /data/file 2>&1; echo listed; ls -A /data", "key-a"), "sub-b");
  ASSERT_TRUE(other.ok()) << other.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Succeeded"));
  std::string log = LogOf("app");
  EXPECT_EQ(log.find("tenant-a-data"), std::string::npos) << log;
  EXPECT_NE(log.find("listed"), std::string::npos) << log;
  ASSERT_TRUE(Command("delete").ok());
  ASSERT_TRUE(WaitFor("Deleted"));

  group_id = crypto::NewUuid();
  auto wrong_key = Run(group("cat /data/file", "not-key-a"), "sub-a");
  EXPECT_FALSE(wrong_key.ok());
  EXPECT_EQ(wrong_key.error_code(), "ShareKeyMismatch") << wrong_key.error_message();
  EXPECT_TRUE(WaitFor("Failed"));

  group_id = crypto::NewUuid();
  auto same = Run(group("cat /data/file", "key-a"), "sub-a");
  ASSERT_TRUE(same.ok()) << same.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Succeeded"));
  EXPECT_NE(LogOf("app").find("tenant-a-data"), std::string::npos) << LogOf("app");
  ASSERT_TRUE(Command("delete").ok());
  ASSERT_TRUE(WaitFor("Deleted"));
  // The key itself is nowhere in the store.
  EXPECT_EQ(Shell("grep -rl key-a " + (stack->dir / "node/shares").string() + " || true"), "");
}

// emptyDir is a tmpfs of the node's cap (4 MiB here), mounted nosuid,nodev: a full one is the
// writer's ENOSPC, and a setuid binary written there does not run with its owner's rights on the host.
TEST_F(NodeServiceTest, AnEmptyDirIsCappedAndMountedNosuid) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"filler",
    "properties":{"image":")" + Image("hello") + R"(","command":["/bin/sh","-c",
    "busybox dd if=/dev/zero of=/scratch/big bs=1048576 count=16 2>&1; echo dd-exit=$?; sleep 3; busybox rm /scratch/big; busybox cp /bin/busybox /scratch/id; busybox chmod 4755 /scratch/id; sleep 30"],
    "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}},"volumeMounts":[{"name":"scratch","mountPath":"/scratch"}]}}],
    "volumes":[{"name":"scratch","emptyDir":{}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));
  const fs::path volume = stack->dir / "node/sandboxes" / group_id / "volumes/scratch";
  for (int i = 0; i < 100 && !fs::exists(volume / "id"); ++i) std::this_thread::sleep_for(100ms);
  std::string log = LogOf("filler");
  EXPECT_NE(log.find("No space left on device"), std::string::npos) << log;
  EXPECT_EQ(log.find("dd-exit=0"), std::string::npos) << log;
  EXPECT_TRUE(WaitFor("VolumeFull", "", 10s));
  std::string mount = Shell("findmnt -n -o FSTYPE,OPTIONS " + volume.string());
  EXPECT_NE(mount.find("tmpfs"), std::string::npos) << mount;
  EXPECT_NE(mount.find("nosuid"), std::string::npos) << mount;
  EXPECT_NE(mount.find("nodev"), std::string::npos) << mount;
  // Run on the host by an unprivileged user (through a bind mount, which keeps the volume's mount
  // flags, in a directory any user can reach), the setuid-root copy stays that user.
  const std::string view = "/tmp/skiff-suid-" + group_id.substr(0, 8);
  Shell("mkdir -p " + view + " && mount --bind " + volume.string() + " " + view);
  EXPECT_EQ(Shell("setpriv --reuid=65534 --regid=65534 --clear-groups " + view + "/id -u"), "65534\n");
  Shell("umount " + view + " && rmdir " + view);
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted"));
  EXPECT_EQ(Shell("findmnt -n " + volume.string() + " || true"), "");
}

// Root in a container is root of the group's user namespace only: on the host it is the first id
// of the group's range, so what it writes (in its volume, in its root file system) belongs to
// that id, never to host root, and the image's root-owned files are that id's too.
TEST_F(NodeServiceTest, RootInAContainerOwnsNoHostFile) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"app",
    "properties":{"image":")" + Image("hello") + R"(","command":["/bin/sh","-c",
    "echo uid=$(busybox id -u); busybox cat /proc/self/uid_map; echo x > /data/by-root; echo y > /by-root;
     busybox stat -c owner=%u /bin/busybox; busybox sleep 30"],
    "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}},"volumeMounts":[{"name":"data","mountPath":"/data"}]}}],
    "volumes":[{"name":"data","emptyDir":{}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));
  std::string log;
  for (int i = 0; i < 100 && (log = LogOf("app")).find("owner=") == std::string::npos; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_NE(log.find("uid=0\n"), std::string::npos) << log;
  std::smatch map;  // the uid_map line: container id 0 starts at host id <host>, <size> ids
  ASSERT_TRUE(std::regex_search(log, map, std::regex(R"(stdout\s+0\s+(\d+)\s+(\d+))"))) << log;
  const uint64_t host = std::stoull(map[1]), size = std::stoull(map[2]);
  EXPECT_GE(host, 65536u) << "container root is no host user: " << log;
  EXPECT_EQ(size, 65536u) << log;
  EXPECT_NE(log.find("owner=0"), std::string::npos) << "the image's files are its root's: " << log;
  struct stat seen {};
  ASSERT_EQ(::stat((stack->dir / "node/sandboxes" / group_id / "volumes/data/by-root").c_str(), &seen), 0);
  EXPECT_EQ(seen.st_uid, host);
  EXPECT_EQ(seen.st_gid, host);
  ASSERT_EQ(::stat((stack->dir / "imagecache/containers" / (group_id + "_app") / "layer/upper/by-root").c_str(), &seen), 0);
  EXPECT_EQ(seen.st_uid, host);
  // The node's root and its sandboxes can be passed through, never listed, by anyone but root.
  for (const char* dir : {"node", "node/sandboxes"}) {
    ASSERT_EQ(::stat((stack->dir / dir).c_str(), &seen), 0);
    EXPECT_EQ(seen.st_mode & 0777, 0711u) << dir;
  }
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted"));
}

// A container's writable layer is a capped tmpfs: filling it is the writer's ENOSPC and a
// WritableLayerFull event, never the node's disk.
TEST_F(NodeServiceTest, AFullWritableLayerIsTheWritersProblemNotTheNodes) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"filler",
    "properties":{"image":")" + Image("hello") + R"(","command":["/bin/sh","-c",
    "busybox dd if=/dev/zero of=/big bs=1048576 count=16 2>&1; echo dd-exit=$?; busybox sleep 30"],
    "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));
  EXPECT_TRUE(WaitFor("WritableLayerFull", "", 15s));
  std::string log = LogOf("filler");
  EXPECT_NE(log.find("No space left on device"), std::string::npos) << log;
  EXPECT_EQ(log.find("dd-exit=0"), std::string::npos) << log;
  const fs::path layer = stack->dir / "imagecache/containers" / (group_id + "_filler") / "layer";
  EXPECT_NE(Shell("findmnt -n -o FSTYPE " + layer.string()).find("tmpfs"), std::string::npos);
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted"));
  EXPECT_FALSE(fs::exists(layer));
}

// Decrypted secret files live on a tmpfs, the bundle that holds opened secure values is 0600,
// and no log line of the node or the image cache carries a secret.
TEST_F(NodeServiceTest, SecretsNeverReachTheNodesDiskOrLogs) {
  const std::string file_secret = "vol-secret-" + crypto::NewUuid().substr(0, 8);
  const std::string env_secret = "env-secret-" + crypto::NewUuid().substr(0, 8);
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never",
    "volumes":[{"name":"creds","secret":{"token":")" + crypto::Base64Encode(file_secret) + R"("}}],
    "containers":[{"name":"app","properties":{"image":")" + Image("hello") + R"(",
      "command":["/bin/sh","-c","cat /secrets/token >/dev/null; sleep 30"],
      "environmentVariables":[{"name":"API_KEY","secureValue":")" + env_secret + R"("}],
      "volumeMounts":[{"name":"creds","mountPath":"/secrets"}],
      "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));
  const fs::path sandbox = stack->dir / "node/sandboxes" / group_id;
  EXPECT_NE(Shell("findmnt -n -o FSTYPE " + (sandbox / "volumes/creds").string()).find("tmpfs"), std::string::npos);
  // -xdev: the node's own disk, not the tmpfs the container reads.
  EXPECT_EQ(Shell("find " + (stack->dir / "node").string() + " -xdev -type f -exec grep -l " + file_secret + " {} + ; true"),
            "");
  struct stat st {};
  ASSERT_EQ(::stat((sandbox / "containers/app/bundle/config.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  for (const char* log : {"node.log", "imagecache.log"}) {
    std::string text = ReadFile((stack->dir / log).string());
    EXPECT_EQ(text.find(file_secret), std::string::npos) << log;
    EXPECT_EQ(text.find(env_secret), std::string::npos) << log;
  }
  for (const auto& e : seen) EXPECT_EQ(e.message().find("-secret-"), std::string::npos) << e.message();
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted"));
}

TEST_F(NodeServiceTest, StopWithGraceThenDelete) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Always","containers":[{"name":"sleeper",
    "properties":{"image":")" + Image("sleeper") + R"(","resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));
  ASSERT_TRUE(Command("stop").ok());
  EXPECT_TRUE(WaitFor("Killing"));
  EXPECT_TRUE(WaitFor("StateChanged", "Stopped"));
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted"));
}

TEST_F(NodeServiceTest, StartAfterStop) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Always","containers":[{"name":"sleeper",
    "properties":{"image":")" + Image("sleeper") + R"(","resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));
  ASSERT_TRUE(Command("stop").ok());
  ASSERT_TRUE(WaitFor("StateChanged", "Stopped"));
  seen.clear();
  ASSERT_TRUE(Command("start").ok());
  EXPECT_TRUE(WaitFor("Started"));
  EXPECT_TRUE(WaitFor("StateChanged", "Running"));
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}

// A start that arrives while the stop still waits for the container (it ignores SIGTERM, so the
// grace period runs out) waits for the stop to finish and then starts: it is not dropped as
// "already started".
TEST_F(NodeServiceTest, StartDuringAStopWaitsAndStarts) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Always","containers":[{"name":"stubborn",
    "properties":{"image":")" + Image("sleeper") + R"(","command":["/bin/sh","-c","trap '' TERM; while true; do sleep 1; done"],
    "resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));
  ASSERT_TRUE(Command("stop").ok());
  ASSERT_TRUE(WaitFor("Killing"));
  seen.clear();
  auto started = Command("start");  // the container is still in its grace period
  ASSERT_TRUE(started.ok()) << started.error_message();
  EXPECT_TRUE(WaitFor("Started"));
  EXPECT_TRUE(WaitFor("StateChanged", "Running"));
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}

TEST_F(NodeServiceTest, OnFailureRestartsWithGrowingBackOff) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"OnFailure","containers":[{"name":"crash",
    "properties":{"image":")" + Image("sleeper") + R"(","command":["/bin/sh","-c","exit 3"],
    "resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  // Back-off 0.4 s, 0.8 s, 1.6 s, read from the node's own event times: from each BackOff (the
  // exit seen, the wait begins) to the next Started. Measuring Started to Started would add the
  // variance of runc's start time, which under load is hundreds of milliseconds.
  std::vector<int64_t> gaps_ms;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  auto millis = [](const v1::ContainerEvent& e) {
    return e.occurred_at().seconds() * 1000 + e.occurred_at().nanos() / 1000000;
  };
  while (gaps_ms.size() < 3 && std::chrono::steady_clock::now() < deadline) {
    WaitFor("never", "", 1s);  // just collects
    std::vector<std::pair<int64_t, std::string>> timeline;
    std::set<std::string> ids;  // JetStream may deliver an event twice
    for (const auto& e : seen) {
      if ((e.name() == "Started" || e.name() == "BackOff") && ids.insert(e.event_id()).second) {
        timeline.emplace_back(millis(e), e.name());
      }
    }
    std::sort(timeline.begin(), timeline.end());
    gaps_ms.clear();
    for (size_t i = 0; i + 1 < timeline.size(); ++i) {
      if (timeline[i].second == "BackOff" && timeline[i + 1].second == "Started") {
        gaps_ms.push_back(timeline[i + 1].first - timeline[i].first);
      }
    }
  }
  ASSERT_GE(gaps_ms.size(), 3u);
  constexpr int64_t kSlackMs = 50;  // the BackOff event is stamped a little after the wait began
  EXPECT_GE(gaps_ms[0], 400 - kSlackMs);
  EXPECT_GE(gaps_ms[1], 800 - kSlackMs);
  EXPECT_GE(gaps_ms[2], 1600 - kSlackMs);
  EXPECT_TRUE(WaitFor("BackOff"));
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}

TEST_F(NodeServiceTest, RestartRunsTheGroupAgainInPlace) {
  // A group that ran to completion runs again; its log keeps both runs.
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"once",
    "properties":{"image":")" + Image("hello") + R"(","resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Succeeded"));
  seen.clear();
  auto restarted = Command("restart");
  ASSERT_TRUE(restarted.ok()) << restarted.error_message();
  EXPECT_TRUE(WaitFor("Restarting"));
  EXPECT_TRUE(WaitFor("StateChanged", "Succeeded"));
  size_t runs = 0;
  for (size_t at = 0; (at = LogOf("once").find("hello from skiff", at)) != std::string::npos; ++at) ++runs;
  EXPECT_EQ(runs, 2u);
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}

TEST_F(NodeServiceTest, ARestartedNodeReadoptsItsGroups) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Always","containers":[{"name":"sleeper",
    "properties":{"image":")" + Image("sleeper") + R"(","resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));
  const std::string shim_pid_file =
      (stack->dir / "node/sandboxes" / group_id / "containers/sleeper/state/shim.pid").string();
  const std::string shim_before = ReadFile(shim_pid_file);
  stack->KillNode();  // SIGKILL: no chance to clean up
  ASSERT_TRUE(ProcessAlive(std::stoi(shim_before))) << "the container's shim must outlive the node";
  stack->StartNode();
  seen.clear();
  // The group is known again and the same container keeps running (no new shim, no restart).
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(ReadFile(shim_pid_file), shim_before);
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted"));
  EXPECT_FALSE(ProcessAlive(std::stoi(shim_before)));
  EXPECT_FALSE(fs::exists(stack->dir / "node/sandboxes" / group_id));
}

TEST_F(NodeServiceTest, LogsAndUsage) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Always","containers":[{"name":"talker",
    "properties":{"image":")" + Image("httpd") + R"(","command":["/bin/sh","-c","echo first; echo second; echo third; while true; do :; done"],
    "resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));
  v1::LogsRequest request;
  request.set_group_id(group_id);
  request.set_container("talker");
  request.set_tail(2);
  v1::LogsReply logs;
  for (int i = 0; i < 50 && logs.content() != "second\nthird\n"; ++i) {
    auto answer = stack->bus->Request("skiff.node.it-node.logs", request.SerializeAsString(), 2s);
    ASSERT_TRUE(answer);
    ASSERT_TRUE(logs.ParseFromString(*answer));
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(logs.found());
  EXPECT_EQ(logs.content(), "second\nthird\n");
  request.set_tail(1);
  request.set_timestamps(true);
  logs.ParseFromString(*stack->bus->Request("skiff.node.it-node.logs", request.SerializeAsString(), 2s));
  EXPECT_EQ(logs.content().substr(27), " third\n");  // "<RFC 3339 time> third"
  // A group no node has: nobody answers.
  request.set_group_id(crypto::NewUuid());
  EXPECT_FALSE(stack->bus->Request("skiff.node.it-node.logs", request.SerializeAsString(), 500ms).has_value());

  // Usage: the busy loop shows cpu seconds growing, capped by its quarter core.
  auto samples = UsageSamples(2);
  ASSERT_GE(samples.size(), 2u);
  EXPECT_EQ(samples.back().container(), "talker");
  EXPECT_GT(samples.back().cpu_seconds(), samples.front().cpu_seconds());
  EXPECT_GT(samples.back().memory_bytes(), 0);
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}

TEST_F(NodeServiceTest, MissingImageFailsWithAClearReason) {
  auto reply = Run(R"({"location":"local","properties":{"containers":[{"name":"ghost","properties":{"image":")" +
                   stack->values["REGISTRY"] + R"(/skiff/ghost:1","resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})");
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error_code(), "ImageNotFound");
  EXPECT_TRUE(WaitFor("Failed", "Failed"));
  EXPECT_FALSE(fs::exists(stack->dir / "node/sandboxes" / group_id));
}

TEST_F(NodeServiceTest, HeartbeatsReportCapacityAndGroups) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Always","containers":[{"name":"sleeper",
    "properties":{"image":")" + Image("sleeper") + R"(","resources":{"requests":{"cpu":0.25,"memoryInGB":0.5}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  // Heartbeats are core NATS: listen through a request-server on the heartbeat subject.
  std::mutex mutex;
  std::vector<v1::NodeHeartbeat> beats;
  auto listener = stack->bus->Serve("skiff.node.heartbeat.it-node", "it-heartbeats", [&](const std::string&, const std::string& data) {
    v1::NodeHeartbeat beat;
    if (beat.ParseFromString(data)) {
      std::lock_guard lock(mutex);
      beats.push_back(beat);
    }
    return std::string();
  }, 1);
  bool found = false;
  for (int i = 0; i < 50 && !found; ++i) {
    std::this_thread::sleep_for(100ms);
    std::lock_guard lock(mutex);
    for (const auto& beat : beats) {
      for (const auto& id : beat.group_ids()) {
        if (id == group_id) {
          found = true;
          EXPECT_EQ(beat.node_id(), "it-node");
          EXPECT_GE(beat.memory_gb_allocated(), 0.5);
          EXPECT_GT(beat.cpu_capacity(), 0);
        }
      }
    }
  }
  EXPECT_TRUE(found);
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}

}  // namespace
}  // namespace skiff::node

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  skiff::node::stack = new skiff::node::Stack;
  ::testing::AddGlobalTestEnvironment(skiff::node::stack);
  return RUN_ALL_TESTS();
}

namespace skiff::node {
namespace {

TEST_F(NodeServiceTest, ExecRunsInTheContainerWithAndWithoutATerminal) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Always","containers":[{"name":"app",
    "properties":{"image":")" + Image("sleeper") + R"(","environmentVariables":[{"name":"GREETING","value":"hello from app"}],
    "resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running"));

  // Without a terminal: the container's environment, its hostname, stdin, and the exit code.
  v1::ExecRequest request;
  request.set_group_id(group_id);
  request.set_container("app");
  for (const char* arg : {"/bin/sh", "-c", "echo $GREETING; hostname; cat; exit 3"}) request.add_command(arg);
  request.set_session_id(crypto::NewUuid());
  v1::StreamInput typed;
  typed.set_data("typed input\n");
  v1::StreamInput eof;
  eof.set_close_input(true);
  auto plain = Stream("exec", request, request.session_id(), {typed, eof});
  ASSERT_TRUE(plain.reply.ok()) << plain.reply.error_message();
  EXPECT_TRUE(plain.ended);
  EXPECT_TRUE(plain.in_order);
  EXPECT_EQ(plain.exit_code, 3);
  EXPECT_EQ(plain.output, "hello from app\nit-group\ntyped input\n");

  // With a terminal of the asked size; a resize reaches it.
  request.clear_command();
  for (const char* arg : {"/bin/sh", "-c", "stty size; read line; stty size"}) request.add_command(arg);
  request.set_tty(true);
  request.set_rows(30);
  request.set_cols(100);
  request.set_session_id(crypto::NewUuid());
  v1::StreamInput resize;
  resize.set_rows(40);
  resize.set_cols(120);
  v1::StreamInput enter;
  enter.set_data("\r");
  auto tty = Stream("exec", request, request.session_id(), {resize, enter}, 30s, true);
  ASSERT_TRUE(tty.reply.ok()) << tty.reply.error_message();
  EXPECT_TRUE(tty.ended);
  EXPECT_EQ(tty.exit_code, 0);
  EXPECT_NE(tty.output.find("30 100"), std::string::npos) << tty.output;
  EXPECT_NE(tty.output.find("40 120"), std::string::npos) << tty.output;

  // Bad targets are answered clearly; a group on no node gets no answer at all.
  request.set_container("nope");
  request.set_session_id(crypto::NewUuid());
  auto missing = Stream("exec", request, request.session_id());
  EXPECT_EQ(missing.reply.error_code(), "ContainerNotFound");
  request.set_container("app");
  request.clear_command();
  request.add_command("/bin/no-such-program");
  request.set_tty(false);
  request.set_session_id(crypto::NewUuid());
  auto not_found = Stream("exec", request, request.session_id());
  EXPECT_TRUE(not_found.ended);
  EXPECT_NE(not_found.exit_code, 0);
  request.set_group_id(crypto::NewUuid());
  EXPECT_FALSE(stack->bus->Request("skiff.node.it-node.exec", request.SerializeAsString(), 500ms).has_value());

  // The caller going away ends a session that would otherwise run on.
  request.set_group_id(group_id);
  request.clear_command();
  for (const char* arg : {"/bin/sleep", "600"}) request.add_command(arg);
  request.set_session_id(crypto::NewUuid());
  // A session id already in use is refused, not taken over.
  {
    v1::StreamReply first, second;
    ASSERT_TRUE(first.ParseFromString(*stack->bus->Request("skiff.node.it-node.exec", request.SerializeAsString(), 5s)));
    ASSERT_TRUE(first.ok());
    ASSERT_TRUE(second.ParseFromString(*stack->bus->Request("skiff.node.it-node.exec", request.SerializeAsString(), 5s)));
    EXPECT_EQ(second.error_code(), "InvalidSession");
    v1::StreamInput stop;
    stop.set_terminate(true);
    stack->bus->PublishCore("skiff.stream.it-node." + request.session_id() + ".in", stop.SerializeAsString());
  }
  request.set_session_id(crypto::NewUuid());
  v1::StreamInput terminate;
  terminate.set_terminate(true);
  auto killed = Stream("exec", request, request.session_id(), {terminate}, 10s);
  EXPECT_TRUE(killed.ended);
  EXPECT_EQ(killed.exit_code, 137);
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}

TEST_F(NodeServiceTest, AttachFollowsTheOutputUntilTheContainerExits) {
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Never","containers":[{"name":"counter",
    "properties":{"image":")" + Image("sleeper") + R"(","command":["/bin/sh","-c","echo one; sleep 1; echo two; sleep 1; echo three; exit 4"],
    "resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("Started"));
  v1::AttachRequest request;
  request.set_group_id(group_id);
  request.set_container("counter");
  request.set_session_id(crypto::NewUuid());
  auto followed = Stream("attach", request, request.session_id());
  ASSERT_TRUE(followed.reply.ok()) << followed.reply.error_message();
  EXPECT_TRUE(followed.ended);
  EXPECT_EQ(followed.output, "one\ntwo\nthree\n");
  EXPECT_EQ(followed.exit_code, 4);
  // Terminated containers' logs stay readable (an ACI complaint): follow again with a tail.
  request.set_session_id(crypto::NewUuid());
  request.set_tail(1);
  request.set_timestamps(true);
  auto again = Stream("attach", request, request.session_id());
  EXPECT_TRUE(again.ended);
  EXPECT_EQ(again.output.substr(again.output.find(' ')), " three\n");
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}

TEST_F(NodeServiceTest, FailedLivenessProbeRestartsTheContainer) {
  // httpd answers its liveness probe; the sidecar's tcpSocket probe hits a closed port.
  auto reply = Run(R"({"location":"local","properties":{"restartPolicy":"Always","containers":[
    {"name":"web","properties":{"image":")" + Image("httpd") + R"(",
      "livenessProbe":{"httpGet":{"path":"/","port":80},"periodSeconds":1},
      "readinessProbe":{"exec":{"command":["/bin/true"]},"periodSeconds":1},
      "resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}},
    {"name":"sidecar","properties":{"image":")" + Image("sleeper") + R"(",
      "livenessProbe":{"tcpSocket":{"port":9},"periodSeconds":1,"failureThreshold":2},
      "resources":{"requests":{"cpu":0.25,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("Killing", "", 30s));
  ASSERT_TRUE(WaitFor("BackOff", "", 30s));
  int unhealthy = 0;
  for (const auto& e : seen) {
    if (e.name() == "Unhealthy") {
      ++unhealthy;
      EXPECT_EQ(e.container(), "sidecar");
      EXPECT_NE(e.message().find("Liveness probe failed: dial tcp 127.0.0.1:9"), std::string::npos) << e.message();
    }
    if (e.name() == "Killing") EXPECT_EQ(e.container(), "sidecar");
  }
  EXPECT_GE(unhealthy, 2);
  Command("delete");
  EXPECT_TRUE(WaitFor("Deleted"));
}

#ifdef SKIFF_GUEST_KERNEL
// Groups with isolation MicroVM on the same node: each runs in its own QEMU microvm (TCG here),
// with logs, exec, restart policy and node restarts working as for runc groups.
struct MicroVmGroupTest : NodeServiceTest {
  fs::path SandboxDir() const { return stack->dir / "node/microvm/sandboxes" / group_id; }
  std::string VmLog(const std::string& container) {
    return ReadFile((SandboxDir() / "containers" / container / "log").string());
  }
  pid_t Vmm() {
    std::ifstream in(stack->dir / "node/microvm/vms" / group_id / "qemu.pid");
    pid_t pid = -1;
    in >> pid;
    return pid;
  }
  bool LogShows(const std::string& container, const std::string& text, std::chrono::seconds limit = 60s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (VmLog(container).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }
};

TEST_F(MicroVmGroupTest, RunsInItsOwnKernelWithLogsExecRestartAndNodeRestart) {
  auto reply = Run(R"({"location":"local","properties":{"isolation":"MicroVM","restartPolicy":"Always",
    "containers":[{"name":"app","properties":{"image":")" + Image("sleeper") + R"(",
    "command":["/bin/sh","-c","echo kernel $(uname -r); ls /proc | grep -c '^[0-9]'; exec sleep 1000"],
    "environmentVariables":[{"name":"GREETING","value":"hi from the vm"}],
    "resources":{"requests":{"cpu":1,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running", 120s));
  // Output reaches the node's log path (the share) and the logs command; the guest's kernel.
  const std::string guest_kernel = fs::path(SKIFF_GUEST_KERNEL).filename().string().substr(std::string("vmlinuz-").size());
  ASSERT_TRUE(LogShows("app", "stdout kernel " + guest_kernel)) << VmLog("app");
  v1::LogsRequest logs_request;
  logs_request.set_group_id(group_id);
  logs_request.set_container("app");
  v1::LogsReply logs;
  ASSERT_TRUE(logs.ParseFromString(*stack->bus->Request("skiff.node.it-node.logs", logs_request.SerializeAsString(), 5s)));
  EXPECT_NE(logs.content().find("kernel " + guest_kernel), std::string::npos) << logs.content();
  EXPECT_FALSE(fs::exists(stack->dir / "node/sandboxes" / group_id)) << "a MicroVM group is not a runc sandbox";

  // Exec in the guest: environment, stdin, exit code; the host's processes are not there; the
  // container and the exec run under the seccomp filter (the node's profile, precompiled).
  v1::ExecRequest request;
  request.set_group_id(group_id);
  request.set_container("app");
  for (const char* arg : {"/bin/sh", "-c", "echo $GREETING; uname -r; cat; ps -o comm | grep -c -e qemu -e skiff-node; "
                                           "grep -h '^Seccomp:' /proc/1/status /proc/self/status; exit 4"}) {
    request.add_command(arg);
  }
  request.set_session_id(crypto::NewUuid());
  v1::StreamInput typed;
  typed.set_data("typed input\n");
  v1::StreamInput eof;
  eof.set_close_input(true);
  auto exec = Stream("exec", request, request.session_id(), {typed, eof}, 60s);
  ASSERT_TRUE(exec.reply.ok()) << exec.reply.error_message();
  EXPECT_TRUE(exec.ended);
  EXPECT_EQ(exec.exit_code, 4);
  EXPECT_EQ(exec.output, "hi from the vm\n" + guest_kernel + "\ntyped input\n0\nSeccomp:\t2\nSeccomp:\t2\n");

  // Usage comes from the container's cgroup inside the guest.
  auto samples = UsageSamples(1);
  ASSERT_FALSE(samples.empty());
  EXPECT_EQ(samples.back().container(), "app");
  EXPECT_GT(samples.back().cpu_seconds(), 0);
  EXPECT_GT(samples.back().memory_bytes(), 0);

  // The node restarts (SIGKILL): the VM runs on and is adopted, the container is not restarted.
  const pid_t vmm = Vmm();
  ASSERT_GT(vmm, 0);
  stack->KillNode();
  ASSERT_TRUE(ProcessAlive(vmm)) << "the VMM must outlive the node";
  stack->StartNode();
  seen.clear();
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(Vmm(), vmm);
  EXPECT_FALSE(WaitFor("Started", "", 1s)) << "an adopted VM's container is not started again";
  request.clear_command();
  request.add_command("true");
  request.set_session_id(crypto::NewUuid());
  auto after = Stream("exec", request, request.session_id(), {}, 60s);
  EXPECT_TRUE(after.reply.ok()) << "exec after the node's restart: " << after.reply.error_message();
  EXPECT_EQ(after.exit_code, 0);

  // The VMM dies: the container ends with a clear reason and restartPolicy Always boots a new VM.
  ::kill(vmm, SIGKILL);
  EXPECT_TRUE(WaitFor("VmmExited", "", 60s));
  EXPECT_TRUE(WaitFor("Started", "", 120s));
  for (int i = 0; i < 100 && (Vmm() == vmm || !ProcessAlive(Vmm())); ++i) std::this_thread::sleep_for(200ms);
  EXPECT_NE(Vmm(), vmm);
  EXPECT_TRUE(ProcessAlive(Vmm()));

  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted", "", 60s));
  const pid_t last = Vmm();
  for (int i = 0; i < 100 && ProcessAlive(last); ++i) std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(ProcessAlive(last));
  EXPECT_FALSE(fs::exists(SandboxDir()));
}

// Probes reach the guest's localhost: httpGet and an exec probe pass for the web server (never
// Unhealthy, never killed); a tcpSocket probe of a closed port fails and restarts the sidecar.
TEST_F(MicroVmGroupTest, TheNodeRefusesTraversalForMicroVmGroupsToo) { ExpectTraversalRefused(*this, "MicroVM"); }

// Hostile images (a traversal entry; a symlink to a host directory and a whiteout beneath it)
// fail the group with UnsafeLayer before any runtime sees them, MicroVM groups too, and leave
// the host untouched.
TEST_F(MicroVmGroupTest, HostileLayersNeverReachTheHostOrTheGuest) {
  const fs::path extra = stack->dir / "hostile-images";
  const std::string build = std::string(SKIFF_SOURCE_DIR) + "/integration-tests/make_oci_image.py " + extra.string();
  Shell(build + " hostile hostile && " + build + " hostile-whiteout hostile-whiteout");
  for (const char* tag : {"hostile", "hostile-whiteout"}) {
    Shell("skopeo copy -q --dest-tls-verify=false oci:" + extra.string() + ":" + tag + " docker://" +
          stack->values["REGISTRY"] + "/skiff/" + tag + ":1");
  }
  fs::create_directories("/tmp/skiff-hostile-dir");
  std::ofstream("/tmp/skiff-hostile-dir/sentinel") << "keep";
  for (const char* isolation : {"MicroVM", "Container"}) {
    for (const char* image : {"hostile", "hostile-whiteout"}) {
      group_id = crypto::NewUuid();
      auto reply = Run(R"({"location":"local","properties":{"isolation":")" + std::string(isolation) +
                       R"(","restartPolicy":"Never","containers":[{"name":"app","properties":{"image":")" +
                       Image(image) + R"(","resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})");
      EXPECT_FALSE(reply.ok()) << isolation << " " << image;
      EXPECT_EQ(reply.error_code(), "UnsafeLayer") << isolation << " " << image << ": " << reply.error_message();
      if (reply.ok()) {  // a failure of this test must not leave a VM running
        Command("delete");
        WaitFor("Deleted", "", 60s);
      }
    }
  }
  EXPECT_FALSE(fs::exists("/tmp/skiff-hostile-escape"));
  EXPECT_TRUE(fs::exists("/tmp/skiff-hostile-dir/sentinel")) << "a whiteout through a planted symlink deleted it";
  fs::remove_all("/tmp/skiff-hostile-dir");
}

TEST_F(MicroVmGroupTest, ProbesRunAgainstTheGuest) {
  auto reply = Run(R"({"location":"local","properties":{"isolation":"MicroVM","restartPolicy":"Always","containers":[
    {"name":"web","properties":{"image":")" + Image("httpd") + R"(",
      "livenessProbe":{"httpGet":{"path":"/","port":80},"periodSeconds":1,"failureThreshold":2},
      "readinessProbe":{"exec":{"command":["/bin/true"]},"periodSeconds":1},
      "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}},
    {"name":"sidecar","properties":{"image":")" + Image("sleeper") + R"(",
      "livenessProbe":{"tcpSocket":{"port":9},"periodSeconds":1,"failureThreshold":2},
      "resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  ASSERT_TRUE(WaitFor("StateChanged", "Running", 120s));
  ASSERT_TRUE(WaitFor("Killing", "", 60s));
  std::this_thread::sleep_for(5s);  // several more rounds of the web server's probes
  int unhealthy = 0;
  for (const auto& e : seen) {
    if (e.name() == "Unhealthy") {
      ++unhealthy;
      EXPECT_EQ(e.container(), "sidecar") << e.message();
      EXPECT_NE(e.message().find("Liveness probe failed: dial tcp 127.0.0.1:9"), std::string::npos) << e.message();
    }
    if (e.name() == "Killing") EXPECT_EQ(e.container(), "sidecar");
  }
  EXPECT_GE(unhealthy, 2);
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted", "", 60s));
}

TEST_F(MicroVmGroupTest, TwoContainersShareTheVmsLocalhost) {
  auto reply = Run(R"({"location":"local","properties":{"isolation":"MicroVM","restartPolicy":"Never",
    "containers":[{"name":"server","properties":{"image":")" + Image("sleeper") + R"(",
      "command":["/bin/sh","-c","echo from-server | nc -l -p 8080"],"resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}},
    {"name":"client","properties":{"image":")" + Image("sleeper") + R"(",
      "command":["/bin/sh","-c","sleep 2; nc 127.0.0.1 8080 </dev/null"],"resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}]}})");
  ASSERT_TRUE(reply.ok()) << reply.error_message();
  EXPECT_TRUE(LogShows("client", "stdout from-server", 120s)) << VmLog("client");
  EXPECT_TRUE(WaitFor("StateChanged", "Succeeded", 60s));
  ASSERT_TRUE(Command("delete").ok());
  EXPECT_TRUE(WaitFor("Deleted", "", 60s));
}
#endif

}  // namespace
}  // namespace skiff::node
