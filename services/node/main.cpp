// skiff-node: runs container groups on this host: takes groups over NATS and runs them under
// runc, each container supervised by a skiff-shim.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "skiff/bus/bus_config.h"
#include "skiff/bus/nats_bus.h"
#include "skiff/bus/subjects.h"
#include "skiff/config/config.h"
#include "skiff/crypto/crypto.h"
#include "skiff/secrets/group_secrets.h"
#include "skiff/lifecycle/termination_signals.h"
#include "skiff/log/log.h"
#include "skiff/metrics/metrics.h"
#include "skiff/node/microvm.h"
#include "skiff/node/microvm_runtime.h"
#include "skiff/node/node_service.h"

namespace {

using namespace skiff;
namespace icv1 = imagecache::v1;

// The node's image cache, over NATS (skiff.imagecache.<node-id>.*).
// A service beside the node (image cache, network) may be starting or restarting: a request
// nobody answers at once is tried again for a while before the group fails.
std::optional<std::string> RequestWhenUp(bus::NatsBus& bus, const std::string& subject, const std::string& payload,
                                         std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    const auto sent = std::chrono::steady_clock::now();
    auto answer = bus.Request(subject, payload, timeout);
    if (answer) return answer;
    // A timeout after the full wait is a real failure; an instant refusal means nobody listens yet.
    if (std::chrono::steady_clock::now() - sent >= timeout || std::chrono::steady_clock::now() > give_up) {
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

class NatsImageProvider : public node::ImageProvider {
 public:
  NatsImageProvider(bus::NatsBus& bus, std::string node_id) : bus_(bus), prefix_("skiff.imagecache." + node_id + ".") {}

  icv1::EnsureImageReply Ensure(const icv1::EnsureImageRequest& request) override {
    icv1::EnsureImageReply reply;
    auto answer = RequestWhenUp(bus_, prefix_ + "ensure", request.SerializeAsString(), std::chrono::minutes(30));
    if (!answer || !reply.ParseFromString(*answer)) {
      reply.set_ok(false);
      reply.set_error_code("ImageCacheUnavailable");
      reply.set_error_message("The node's image cache did not answer.");
    }
    return reply;
  }
  icv1::MountRootfsReply Mount(const std::string& image, const std::string& container_id,
                               const std::optional<confine::IdRange>& ids) override {
    return Call("mount", image, container_id, ids);
  }
  void Unmount(const std::string& image, const std::string& container_id) override {
    Call("unmount", image, container_id);
  }
  void Release(const std::string& image, const std::string& holder) override {
    icv1::ReleaseImageRequest request;
    request.set_image(image);
    request.set_holder(holder);
    bus_.Request(prefix_ + "release", request.SerializeAsString(), std::chrono::seconds(10));
  }

 private:
  icv1::MountRootfsReply Call(const std::string& verb, const std::string& image, const std::string& container_id,
                              const std::optional<confine::IdRange>& ids = std::nullopt) {
    icv1::MountRootfsRequest request;
    request.set_image(image);
    request.set_container_id(container_id);
    if (ids) {
      request.set_id_map_base(ids->host_base);
      request.set_id_map_size(ids->size);
    }
    icv1::MountRootfsReply reply;
    auto answer = RequestWhenUp(bus_, prefix_ + verb, request.SerializeAsString(), std::chrono::seconds(30));
    if (!answer || !reply.ParseFromString(*answer)) {
      reply.set_ok(false);
      reply.set_error_code("ImageCacheUnavailable");
      reply.set_error_message("The node's image cache did not answer.");
    }
    return reply;
  }
  bus::NatsBus& bus_;
  std::string prefix_;
};

// The host's network service: skiff.network.<agent>.attach|detach.
class NatsNetworkProvider : public node::NetworkProvider {
 public:
  NatsNetworkProvider(bus::NatsBus& bus, const std::string& agent) : bus_(bus), prefix_("skiff.network." + agent + ".") {}
  skiff::network::v1::AttachReply Attach(const skiff::network::v1::AttachRequest& request) override {
    skiff::network::v1::AttachReply reply;
    auto answer = RequestWhenUp(bus_, prefix_ + "attach", request.SerializeAsString(), std::chrono::seconds(30));
    if (!answer || !reply.ParseFromString(*answer) || (!reply.ok() && reply.error_code().empty())) {
      reply.set_ok(false);
      reply.set_error_code("NetworkUnavailable");
      reply.set_error_message("The host's network service did not answer.");
    }
    return reply;
  }
  skiff::network::v1::DetachReply Detach(const skiff::network::v1::DetachRequest& request) override {
    skiff::network::v1::DetachReply reply;
    auto answer = bus_.Request(prefix_ + "detach", request.SerializeAsString(), std::chrono::seconds(30));
    if (!answer || !reply.ParseFromString(*answer)) {
      reply.set_ok(false);
      reply.set_error_message("The host's network service did not answer.");
    }
    return reply;
  }

 private:
  bus::NatsBus& bus_;
  std::string prefix_;
};

// Container and group events on JetStream.
class NatsNodeEvents : public node::NodeEventPublisher {
 public:
  NatsNodeEvents(bus::NatsBus& bus, std::string node_id) : bus_(bus), node_id_(std::move(node_id)) {}
  void Publish(const node::v1::ContainerEvent& event) override {
    std::string name = event.name();
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    // Group-level runtime events go under skiff.events.sandbox.*: skiff.events.group.* carries the
    // gateway's GroupEvent, a different message. The subject ends in this node's id, the only
    // one its NATS credential may publish.
    std::string subject = event.container().empty()
                              ? subjects::NodeEvent("sandbox", name == "statechanged" ? "state" : name, node_id_)
                              : subjects::NodeEvent("container", name, node_id_);
    auto result = bus_.Publish(subject, event.event_id(), event.SerializeAsString());
    if (!result.ok) spdlog::warn("event {} not published: {}", subject, result.error);
  }

 private:
  bus::NatsBus& bus_;
  std::string node_id_;
};

// Exec and attach streams: output on skiff.stream.<node>.<session>.out, input heard on .in
// while the session is open.
class NatsStreamTransport : public node::StreamTransport {
 public:
  NatsStreamTransport(bus::NatsBus& bus, std::string node_id) : bus_(bus), node_id_(std::move(node_id)) {}
  void SetService(node::NodeService* service) { service_ = service; }
  void Output(const std::string& session_id, const node::v1::StreamOutput& output) override {
    bus_.PublishCore(subjects::StreamOut(node_id_, session_id), output.SerializeAsString());
  }
  void Opened(const std::string& session_id) override {
    auto* service = service_;
    auto sub = bus_.Subscribe(subjects::StreamIn(node_id_, session_id),
                              [service, session_id](const std::string&, const std::string& data) {
                                node::v1::StreamInput input;
                                if (input.ParseFromString(data)) service->Input(session_id, input);
                              });
    std::lock_guard lock(mutex_);
    inputs_[session_id] = std::move(sub);
  }
  void Closed(const std::string& session_id) override {
    std::lock_guard lock(mutex_);
    inputs_.erase(session_id);
  }

 private:
  bus::NatsBus& bus_;
  std::string node_id_;
  node::NodeService* service_ = nullptr;
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<bus::Subscription>> inputs_;
};

// A request about a group: answered when the group is here, else left unanswered.
template <typename Request, typename Handle>
std::optional<std::string> Answer(const std::string& data, Handle handle) {
  Request request;
  if (!request.ParseFromString(data)) return std::nullopt;
  auto reply = handle(request);
  if (!reply) return std::nullopt;
  return reply->SerializeAsString();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

int Serve(const config::Config& cfg, const std::string& shim) {
  lifecycle::TerminationSignals termination;  // before any thread starts
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  node::NodeOptions options;
  options.node_id = cfg.GetString("node.node_id", host);
  options.zone = cfg.GetString("node.zone", "");
  options.host_tag = cfg.GetString("node.host_tag", "skiff");
  options.standby_sandboxes = static_cast<int>(cfg.GetInt("node.standby_sandboxes", 2));
  options.cpu_capacity = cfg.GetDouble("node.cpu", static_cast<double>(std::thread::hardware_concurrency()));
  options.memory_gb_capacity = cfg.GetDouble("node.memory_gb", 4);
  const std::string root = cfg.GetString("node.root", "/var/lib/skiff/node");
  options.volumes.shares_root = cfg.GetString("node.shares_root", root + "/shares");
  options.volumes.git_insecure_hosts = cfg.GetList("node.git_insecure_hosts", {});
  options.volumes.git_timeout = std::chrono::seconds(cfg.GetInt("node.git_timeout_s", 120));
  options.volumes.git_max_bytes = cfg.GetInt("node.git_max_mb", 512) << 20;
  options.volumes.empty_dir_max_bytes = cfg.GetInt("node.empty_dir_max_mb", 1024) << 20;
  options.stop_grace = std::chrono::milliseconds(cfg.GetInt("node.stop_grace_ms", 10000));
  options.state_dir = root;
  options.backoff.initial = std::chrono::milliseconds(cfg.GetInt("node.backoff_initial_ms", 10000));
  options.backoff.cap = std::chrono::milliseconds(cfg.GetInt("node.backoff_cap_ms", 300000));

  options.user_namespaces.enabled = cfg.GetBool("node.user_namespaces", true);
  options.user_namespaces.first_host_id =
      static_cast<uint32_t>(cfg.GetInt("node.id_range_first", options.user_namespaces.first_host_id));
  options.user_namespaces.range_size =
      static_cast<uint32_t>(cfg.GetInt("node.id_range_size", options.user_namespaces.range_size));
  options.user_namespaces.ranges = static_cast<uint32_t>(cfg.GetInt("node.id_ranges", options.user_namespaces.ranges));
  options.user_namespaces.claims_dir = cfg.GetString("node.id_range_claims", "/var/lib/skiff/id-ranges");
  if (options.user_namespaces.enabled &&
      (options.user_namespaces.first_host_id < 65536 || options.user_namespaces.range_size < 65536)) {
    throw std::runtime_error("node.id_range_first and node.id_range_size must be at least 65536");
  }

  node::RuncRuntimeOptions runtime_options;
  runtime_options.root = root;
  runtime_options.runc = cfg.GetString("node.runc", "runc");
  runtime_options.shim_binary = shim;
  runtime_options.host_tag = options.host_tag;
  auto seccomp = node::ParseSeccompProfile(ReadFile(cfg.Require("node.seccomp_profile")));
  if (!seccomp) throw std::runtime_error("node.seccomp_profile is not a valid seccomp profile");
  runtime_options.seccomp = *seccomp;
  node::RuncRuntime containers(runtime_options);
  // MicroVM isolation: QEMU microvm groups beside the runc ones, when configured.
  std::unique_ptr<node::MicroVmRuntime> microvms;
  if (cfg.GetBool("node.microvm", false)) {
    node::MicroVmRuntimeOptions vm_options;
    vm_options.root = root + "/microvm";
    vm_options.vm.qemu = cfg.GetString("node.microvm_qemu", "qemu-system-x86_64");
    vm_options.vm.virtiofsd = cfg.GetString("node.microvm_virtiofsd", "/usr/lib/qemu/virtiofsd");
    vm_options.vm.kernel = cfg.Require("node.microvm_kernel");
    vm_options.vm.initramfs = cfg.Require("node.microvm_initramfs");
    vm_options.seccomp = *seccomp;
    vm_options.host_tag = options.host_tag;
    for (const auto& path : {vm_options.vm.kernel, vm_options.vm.initramfs}) {
      if (!std::filesystem::exists(path)) throw std::runtime_error("node.microvm: " + path + " does not exist");
    }
    microvms = std::make_unique<node::MicroVmRuntime>(vm_options);
    for (const auto& warning : microvms->warnings()) spdlog::warn("microVM: {}", warning);
    options.microvm = true;
  }
  node::IsolatingRuntime runtime(containers, microvms.get());

  std::shared_ptr<crypto::SecretBox> box;
  if (auto key = cfg.Find("node.secret_key"); key && !key->empty()) {
    box = std::make_shared<crypto::SecretBox>(
        crypto::SecretBox::FromBase64Keys(*key, cfg.GetString("node.old_secret_keys", "")));
  }
  auto open_secret = secrets::MakeOpener(box);

  bus::NatsBus bus(bus::ConnectOptionsFrom(cfg, "skiff-node-" + options.node_id));
  bus.EnsureStream({"SKIFF_EVENTS", {"skiff.events.>"}, std::chrono::seconds(120), true});
  NatsImageProvider images(bus, options.node_id);
  NatsNodeEvents events(bus, options.node_id);
  NatsStreamTransport streams(bus, options.node_id);
  node::NodeService service(runtime, images, events, open_secret, options);
  streams.SetService(&service);
  service.SetStreamTransport(&streams);
  std::unique_ptr<NatsNetworkProvider> network;
  if (auto agent = cfg.GetString("network.agent", ""); !agent.empty()) {
    network = std::make_unique<NatsNetworkProvider>(bus, agent);
    service.SetNetwork(network.get());
  } else {
    spdlog::warn("network.agent is not set: groups get a namespace with loopback only");
  }

  auto server = bus.Serve("skiff.node." + options.node_id + ".*", "node-" + options.node_id,
                          [&](const std::string& subject, const std::string& data) -> std::optional<std::string> {
                            const std::string verb = subject.substr(subject.rfind('.') + 1);
                            metrics::DefaultRegistry()
                                .GetCounter("skiff_node_commands_total", "Commands received, by verb.",
                                            {{"verb", verb == "run" || verb == "stop" || verb == "start" ||
                                                              verb == "restart" || verb == "delete"
                                                          ? verb
                                                          : "other"}})
                                .Add();
                            if (verb == "run") {
                              node::v1::RunGroupRequest request;
                              if (!request.ParseFromString(data)) return {};
                              return service.Run(request).SerializeAsString();
                            }
                            // Logs and streams of a group here (a reply only if it is here).
                            if (verb == "logs") return Answer<node::v1::LogsRequest>(data, [&](const auto& r) { return service.Logs(r); });
                            if (verb == "exec") return Answer<node::v1::ExecRequest>(data, [&](const auto& r) { return service.Exec(r); });
                            if (verb == "attach") {
                              return Answer<node::v1::AttachRequest>(data, [&](const auto& r) { return service.Attach(r); });
                            }
                            node::v1::GroupCommandRequest request;
                            if (!request.ParseFromString(data)) return {};
                            if (verb == "stop") return service.Stop(request.group().group_id()).SerializeAsString();
                            if (verb == "start") return service.Start(request.group().group_id()).SerializeAsString();
                            if (verb == "restart") {
                              return service.Restart(request.group().group_id()).SerializeAsString();
                            }
                            if (verb == "delete") {
                              return service.Delete(request.group().group_id(), request.placement_generation())
                                  .SerializeAsString();
                            }
                            node::v1::NodeCommandReply unknown;
                            unknown.set_error_code("UnknownCommand");
                            return unknown.SerializeAsString();
                          },
                          static_cast<int>(cfg.GetInt("node.workers", 8)));

  auto& registry = metrics::DefaultRegistry();
  metrics::MetricsServer metrics_server(cfg.GetString("metrics.listen", "127.0.0.1:9104"), registry);
  if (!metrics_server.error().empty()) spdlog::warn("no /metrics: {}", metrics_server.error());
  // Per-container usage from cgroups, read when scraped.
  registry.AddCollector([&service](std::vector<metrics::Registry::Sample>& out) {
    const auto usage = service.Usage();
    for (const char* metric : {"cpu", "memory"}) {
      for (const auto& c : usage.containers()) {
        metrics::Labels labels{{"group_id", c.group().group_id()}, {"group", c.group().name()},
                               {"resource_group", c.group().resource_group()}, {"container", c.container()}};
        if (metric == std::string("cpu")) {
          out.push_back({"skiff_container_cpu_seconds_total", "CPU time a container used (cpuacct.usage).", "counter",
                         labels, c.cpu_seconds()});
        } else {
          out.push_back({"skiff_container_memory_bytes", "Memory a container uses now (memory.usage_in_bytes).",
                         "gauge", labels, c.memory_bytes()});
        }
      }
    }
    const auto heartbeat = service.Heartbeat();
    out.push_back({"skiff_node_groups", "Groups on this node.", "gauge", {}, static_cast<double>(heartbeat.placed_size())});
    out.push_back({"skiff_node_cpu_allocated", "CPU requested by the groups on this node.", "gauge", {},
                   heartbeat.cpu_allocated()});
    out.push_back({"skiff_node_standby_sandboxes", "Spare sandboxes ready in the standby pool.", "gauge", {},
                   static_cast<double>(heartbeat.standby_sandboxes())});
  });

  int restored = service.Restore();
  if (restored > 0) spdlog::info("re-adopted {} groups from before the restart", restored);

  std::atomic<bool> stopping{false};
  std::thread ticker([&] {
    auto next_heartbeat = std::chrono::steady_clock::now();
    auto next_usage = next_heartbeat;
    while (!stopping) {
      auto now = std::chrono::steady_clock::now();
      service.Tick(now);
      if (now >= next_heartbeat) {
        bus.PublishCore(subjects::Heartbeat(options.node_id), service.Heartbeat().SerializeAsString());
        next_heartbeat = now + std::chrono::milliseconds(cfg.GetInt("node.heartbeat_ms", 2000));
      }
      if (now >= next_usage) {
        bus.PublishCore(subjects::Usage(options.node_id), service.Usage().SerializeAsString());
        next_usage = now + std::chrono::milliseconds(cfg.GetInt("node.usage_ms", 10000));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  spdlog::info("node {} serving skiff.node.{}.*", options.node_id, options.node_id);
  int signal = termination.Wait();
  spdlog::info("signal {}: shutting down (containers keep running under their shims)", signal);
  stopping = true;
  ticker.join();
  service.DropSpares();
  server.reset();
  bus.Drain(std::chrono::seconds(5));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"skiff-node: runs Skiff container groups on this host"};
  std::string config_file;
  app.add_option("-c,--config", config_file, "INI config file (SKIFF_* environment variables override it)");
  app.require_subcommand(0, 1);
  app.add_subcommand("serve", "Run groups for the scheduler over NATS (the default)");
  std::string kernel, qemu = "qemu-system-x86_64";
  auto* kvm_check = app.add_subcommand("kvm-check", "Say whether KVM boots the guest kernel here (exit 0: yes)");
  kvm_check->add_option("--kernel", kernel, "the guest kernel")->required();
  kvm_check->add_option("--qemu", qemu, "the QEMU binary");
  CLI11_PARSE(app, argc, argv);
  if (kvm_check->parsed()) {
    const bool boots = node::KvmBootsGuests(qemu, kernel, std::filesystem::temp_directory_path().string());
    std::cout << (boots ? "kvm" : "no kvm") << "\n";
    return boots ? 0 : 1;
  }
  try {
    config::Config cfg = config_file.empty() ? config::Config() : config::Config::FromFile(config_file);
    log::Init("node", cfg.GetString("log.level", "info"));
    char self[4096] = {};
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    std::string here = n > 0 ? std::string(self, static_cast<size_t>(n)) : argv[0];
    here = here.substr(0, here.rfind('/') + 1);
    // The shim ships beside skiff-node (services/node/ in the build tree).
    return Serve(cfg, cfg.GetString("node.shim", here + "skiff-shim"));
  } catch (const std::exception& e) {
    std::cerr << "skiff-node: " << e.what() << "\n";
    return 1;
  }
}
