#include "skiff/node/node_service.h"

#include <google/protobuf/util/time_util.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "skiff/crypto/crypto.h"
#include "skiff/secrets/group_secrets.h"
#include "skiff/node/observe.h"
#include "skiff/oci/process.h"

namespace skiff::node {

namespace {
// protobuf's TimeUtil::GetCurrentTime() has whole seconds here; events need milliseconds (the
// back-off, probes and per-second metering are read from their times).
google::protobuf::Timestamp Now() {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// Ensures a group's images, in order, on one thread of its own while the caller sets up the
// sandbox, network and volumes: a cold pull and the set-up overlap instead of adding up. Holds
// of pulls nobody took (the set-up failed first) are given back when it is destroyed.
class ImagePrefetch {
 public:
  ImagePrefetch(node::ImageProvider& images, std::vector<imagecache::v1::EnsureImageRequest> requests)
      : images_(images), requests_(std::move(requests)), replies_(requests_.size()), taken_(requests_.size()) {
    if (!requests_.empty()) worker_ = std::thread([this] { PullAll(); });
  }
  ImagePrefetch(const ImagePrefetch&) = delete;
  ImagePrefetch& operator=(const ImagePrefetch&) = delete;
  ~ImagePrefetch() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;  // the pull under way finishes; none after it starts
    }
    if (worker_.joinable()) worker_.join();
    for (size_t i = 0; i < requests_.size(); ++i) {
      if (taken_[i] || !replies_[i] || !replies_[i]->ok()) continue;
      try {
        images_.Release(requests_[i].image(), requests_[i].holder());
      } catch (const std::exception&) {
        // the image cache reclaims holds of groups the node no longer runs
      }
    }
  }

  // Waits for the pull made for `holder`.
  imagecache::v1::EnsureImageReply Take(const std::string& holder) {
    for (size_t i = 0; i < requests_.size(); ++i) {
      if (requests_[i].holder() != holder) continue;
      std::unique_lock lock(mutex_);
      done_.wait(lock, [&] { return replies_[i].has_value(); });
      taken_[i] = true;
      return *replies_[i];
    }
    imagecache::v1::EnsureImageReply missing;
    missing.set_ok(false);
    missing.set_error_code("InternalError");
    missing.set_error_message("no image was asked for " + holder);
    return missing;
  }

 private:
  void PullAll() {
    for (size_t i = 0; i < requests_.size(); ++i) {
      {
        std::lock_guard lock(mutex_);
        if (stopping_) {
          for (size_t j = i; j < requests_.size(); ++j) replies_[j] = Unpulled();
          done_.notify_all();
          return;
        }
      }
      imagecache::v1::EnsureImageReply reply;
      try {
        reply = images_.Ensure(requests_[i]);
      } catch (const std::exception& e) {
        reply.set_ok(false);
        reply.set_error_code("ImageCacheUnavailable");
        reply.set_error_message(e.what());
      }
      std::lock_guard lock(mutex_);
      replies_[i] = std::move(reply);
      done_.notify_all();
    }
  }
  static imagecache::v1::EnsureImageReply Unpulled() {
    imagecache::v1::EnsureImageReply reply;
    reply.set_ok(false);
    reply.set_error_code("Canceled");
    reply.set_error_message("the group's set-up failed before this image was pulled");
    return reply;
  }

  node::ImageProvider& images_;
  const std::vector<imagecache::v1::EnsureImageRequest> requests_;
  std::mutex mutex_;
  std::condition_variable done_;
  std::vector<std::optional<imagecache::v1::EnsureImageReply>> replies_;
  std::vector<bool> taken_;
  bool stopping_ = false;
  std::thread worker_;
};
}  // namespace

namespace fs = std::filesystem;
namespace ci = containerinstance::v1;

NodeService::NodeService(SandboxRuntime& runtime, ImageProvider& images, NodeEventPublisher& events,
                         SecretOpener open_secret, NodeOptions options)
    : runtime_(runtime), probes_(std::make_unique<SandboxProbeRunner>(runtime)), images_(images), events_(events), open_secret_(std::move(open_secret)),
      options_(std::move(options)), id_ranges_(options_.user_namespaces, options_.host_tag) {
  // Ranges of an earlier process's spares (the runtime removed them) and of groups it no longer
  // had go back to the host.
  id_ranges_.ReleaseUnless([this](const std::string& group_id) {
    return !options_.state_dir.empty() && fs::exists(options_.state_dir + "/groups/" + group_id + ".pb");
  });
}

void NodeService::Publish(const Group& group, const std::string& container, const std::string& name,
                          const std::string& message, const std::string& type, const std::string& state) {
  Publish(group.ref, group.placement_generation, container, name, message, type, state);
}

void NodeService::Publish(const events::v1::GroupRef& ref, int64_t placement_generation, const std::string& container,
                          const std::string& name, const std::string& message, const std::string& type,
                          const std::string& state) {
  events_.Publish(NewEvent(ref, placement_generation, container, name, message, type, state));
}

v1::ContainerEvent NodeService::NewEvent(const events::v1::GroupRef& ref, int64_t placement_generation,
                                         const std::string& container, const std::string& name,
                                         const std::string& message, const std::string& type,
                                         const std::string& state) {
  v1::ContainerEvent event;
  event.set_event_id(crypto::NewUuid());
  *event.mutable_occurred_at() = Now();
  event.set_node_id(options_.node_id);
  *event.mutable_group() = ref;
  event.set_placement_generation(placement_generation);
  event.set_container(container);
  event.set_name(name);
  event.set_message(message);
  event.set_type(type);
  event.set_group_state(state);
  return event;
}

void NodeService::Event(const SupervisorEvent& e) {
  // Called from Tick with mutex_ held.
  auto it = groups_.find(e.group_id);
  if (it == groups_.end()) return;
  const Group& group = it->second;
  v1::ContainerEvent event = NewEvent(group.ref, group.placement_generation, e.container, e.name, e.message, e.type,
                                      group.supervisor ? group.supervisor->State() : "Pending");
  // The container's state as the node sees it now, so readers need not parse messages.
  if (group.supervisor && !e.container.empty()) {
    const auto& containers = group.supervisor->Containers();
    if (auto status = containers.find(e.container); status != containers.end()) {
      auto* view = event.mutable_instance_view();
      view->set_restart_count(status->second.restart_count);
      auto* current = view->mutable_current_state();
      current->set_state(status->second.state);
      current->set_start_time(status->second.start_time);
      current->set_finish_time(status->second.finish_time);
      current->set_detail_status(status->second.detail);
      if (status->second.exit_code) current->set_exit_code(*status->second.exit_code);
    }
  }
  events_.Publish(event);
}

void NodeService::GroupStateChanged(const std::string& group_id, const std::string& state) {
  auto it = groups_.find(group_id);
  if (it == groups_.end()) return;
  Publish(it->second, "", "StateChanged", "The group is " + state, "Normal", state);
}

std::optional<std::string> NodeService::Prepare(Group& group, GroupPlan* plan) {
  const auto& props = group.spec.properties();
  const std::string& group_id = group.ref.group_id();
  plan->sandbox.id = group_id;
  plan->sandbox.hostname = group.ref.name();
  plan->restart_policy = ParseRestartPolicy(props.restart_policy());
  plan->backoff = options_.backoff;
  plan->stop_grace = options_.stop_grace;
  plan->sandbox.isolation = props.isolation();
  for (const auto& container : props.containers()) {
    plan->sandbox.cpu += container.properties().resources().requests().cpu();
    plan->sandbox.memory_gb += container.properties().resources().requests().memory_in_gb();
  }
  const bool microvm = props.isolation() == "MicroVM";
  if (microvm && !options_.microvm) return "IsolationUnavailable: this node offers no MicroVM isolation";
  if (auto error = CheckGroupPaths(group_id, group.spec, options_.volumes)) return error;

  std::vector<imagecache::v1::EnsureImageRequest> ensures;
  auto ask_for_image = [&](const std::string& name, const std::string& image) {
    imagecache::v1::EnsureImageRequest& ensure = ensures.emplace_back();
    ensure.set_image(image);
    ensure.set_holder(group_id + "/" + name);
    ensure.set_causation_id(group_id);
    for (const auto& cred : props.image_registry_credentials()) {
      auto* c = ensure.add_credentials();
      c->set_server(cred.server());
      c->set_username(cred.username());
      c->set_password(cred.password());
      c->set_password_context(secrets::RegistryPasswordContext(group.ref.subscription_id(), group_id, cred.server()));
    }
    Publish(group, name, "Pulling", "pulling image \"" + image + "\"", "Normal", "Pending");
  };
  for (const auto& init : props.init_containers()) ask_for_image(init.name(), init.properties().image());
  for (const auto& container : props.containers()) ask_for_image(container.name(), container.properties().image());
  ImagePrefetch pulls(images_, std::move(ensures));
  std::optional<std::string> spare;
  if (group.claim_spare && !microvm) {  // the standby pool holds runc sandboxes
    std::lock_guard lock(spares_mutex_);
    if (!spares_.empty()) {
      spare = spares_.front();
      spares_.pop_front();
    }
  }
  // Root in a runc group's containers is an id of the group's own range, no one on the host. A
  // spare's namespaces were made for a range of their own, which the group takes with it.
  const bool user_namespaces = !microvm && options_.user_namespaces.enabled;
  if (spare) {
    plan->sandbox.ids = user_namespaces ? id_ranges_.Held(*spare) : std::nullopt;
    if (user_namespaces && (!plan->sandbox.ids || id_ranges_.Held(group_id))) {
      DropSpare(*spare);  // made without a range, or the group has its own already
    } else if (auto error = runtime_.ClaimSpare(*spare, plan->sandbox)) {
      DropSpare(*spare);  // a broken spare: set the sandbox up as usual
    } else {
      group.from_standby = true;
      if (user_namespaces) id_ranges_.Transfer(*spare, group_id);
    }
  }
  std::optional<confine::IdRange> ids;
  if (user_namespaces) {
    ids = id_ranges_.Acquire(group_id);
    if (!ids) return "IdRangesExhausted: this node has no free user namespace id range";
  }
  plan->sandbox.ids = ids;
  if (!group.from_standby) {
    if (auto error = runtime_.CreateSandbox(plan->sandbox)) return "SandboxFailed: " + *error;
  }
  if (auto error = AttachNetwork(group, &plan->sandbox)) return error;

  // Volumes, prepared once per group and shared by its containers, confined beneath the
  // group's own volume directory (see volumes.h).
  std::map<std::string, std::string> volume_paths;
  VolumeContext volume_context{group.ref.subscription_id(), group_id, runtime_.VolumeDir(group_id),
                               runtime_.NetworkNamespace(group_id), ids};
  if (auto error = PrepareVolumes(group.spec, volume_context, options_.volumes, open_secret_, &volume_paths)) {
    return error;
  }
  for (const auto& volume : props.volumes()) {
    if (volume.has_empty_dir() && options_.volumes.empty_dir_max_bytes > 0) {
      group.capped_volumes[volume.name()] = volume_paths[volume.name()];
    }
  }

  auto build = [&](const std::string& name, const std::string& image, const google::protobuf::RepeatedPtrField<std::string>& command,
                   const google::protobuf::RepeatedPtrField<ci::EnvironmentVariable>& env,
                   const google::protobuf::RepeatedPtrField<ci::VolumeMount>& mounts, const ci::ResourceRequirements* resources,
                   ContainerLaunch* launch) -> std::optional<std::string> {
    auto ensured = pulls.Take(group_id + "/" + name);
    if (!ensured.ok()) return ensured.error_code() + ": " + ensured.error_message();
    Publish(group, name, "Pulled", "Successfully pulled image \"" + image + "\"", "Normal", "Pending");
    const std::string container_id = group_id + "_" + name;
    auto mounted = images_.Mount(image, container_id, ids);
    if (!mounted.ok()) return mounted.error_code() + ": " + mounted.error_message();
    group.mounts.emplace_back(image, container_id);

    const auto& config = ensured.image().config().config();
    oci::ImageProcessDefaults defaults{{config.entrypoint().begin(), config.entrypoint().end()},
                                       {config.cmd().begin(), config.cmd().end()},
                                       {config.env().begin(), config.env().end()},
                                       config.working_dir(),
                                       config.user()};
    std::vector<std::pair<std::string, std::string>> variables;
    for (const auto& var : env) {
      if (var.has_secure_value()) {
        auto opened = open_secret_(var.secure_value(),
                                   secrets::EnvContext(group.ref.subscription_id(), group_id, name, var.name()));
        if (!opened) return "SecretUnavailable: the secure value of " + var.name() + " cannot be decrypted on this node";
        variables.emplace_back(var.name(), *opened);
      } else {
        variables.emplace_back(var.name(), var.value());
      }
    }
    auto process = oci::MergeProcess(defaults, {command.begin(), command.end()}, variables);
    if (!process) {
      return "NoCommand: the image " + image + " has no entrypoint or command, and container " + name + " sets none";
    }
    launch->group_id = group_id;
    launch->container_name = name;
    launch->hostname = group.ref.name();
    launch->process = *process;
    launch->rootfs = mounted.rootfs();
    launch->ids = ids;
    // The image cache caps a container's writable layer with a tmpfs beside its rootfs.
    const std::string layer = fs::path(mounted.rootfs()).parent_path().string() + "/layer";
    if (fs::exists(layer)) group.capped_layers[name] = layer;
    auto user = ResolveUser(process->user, launch->rootfs);
    if (!user) return "UnknownUser: the image's user '" + process->user + "' is not in its /etc/passwd";
    launch->uid = user->first;
    launch->gid = user->second;
    if (resources) {
      const auto& requests = resources->requests();
      const auto& limits = resources->limits();
      launch->cpu = limits.has_cpu() ? limits.cpu() : requests.cpu();
      launch->memory_gb = limits.has_memory_in_gb() ? limits.memory_in_gb() : requests.memory_in_gb();
      group.cpu += requests.cpu();
      group.memory_gb += requests.memory_in_gb();
    } else {
      launch->cpu = 0.1;  // init containers use the group's resources; ACI gives them no request
      launch->memory_gb = 0.25;
    }
    for (const auto& mount : mounts) {
      auto it = volume_paths.find(mount.name());
      if (it == volume_paths.end()) return "VolumeFailed: no volume named " + mount.name();
      bool read_only = mount.read_only();
      for (const auto& volume : props.volumes()) {
        if (volume.name() == mount.name() && volume.secret_size() > 0) read_only = true;
      }
      launch->volumes.push_back({it->second, mount.mount_path(), read_only});
    }
    return std::nullopt;
  };

  for (const auto& init : props.init_containers()) {
    ContainerLaunch launch;
    if (auto error = build(init.name(), init.properties().image(), init.properties().command(),
                           init.properties().environment_variables(), init.properties().volume_mounts(), nullptr,
                           &launch)) {
      return error;
    }
    plan->init_containers.push_back(std::move(launch));
  }
  for (const auto& container : props.containers()) {
    ContainerLaunch launch;
    const auto& p = container.properties();
    if (auto error = build(container.name(), p.image(), p.command(), p.environment_variables(), p.volume_mounts(),
                           &p.resources(), &launch)) {
      return error;
    }
    if (p.has_liveness_probe()) plan->liveness[container.name()] = ProbeFromModel(p.liveness_probe());
    if (p.has_readiness_probe()) plan->readiness[container.name()] = ProbeFromModel(p.readiness_probe());
    plan->containers.push_back(std::move(launch));
  }
  // Heavy set-up (a microVM's boot) here, before the group is supervised under the node's lock.
  if (auto error = runtime_.PrepareSandbox(group_id)) return "SandboxFailed: " + *error;
  return std::nullopt;
}

std::optional<std::string> NodeService::AttachNetwork(Group& group, SandboxSpec* sandbox) {
  if (!network_) return std::nullopt;
  const auto& props = group.spec.properties();
  network::v1::AttachRequest request;
  *request.mutable_group() = group.ref;
  request.set_node_id(options_.node_id);
  request.set_netns_path(runtime_.NetworkNamespace(group.ref.group_id()));
  *request.mutable_dns_config() = props.dns_config();
  request.set_placement_generation(group.placement_generation);
  auto reply = network_->Attach(request);
  if (!reply.ok()) {
    Publish(group, "", "NetworkFailed", reply.error_code() + ": " + reply.error_message(), "Warning", "Pending");
    return "NetworkFailed: " + reply.error_message();
  }
  std::string assigned = reply.ip() + "/" + std::to_string(reply.prefix_length());
  if (!reply.public_ip().empty()) assigned += ", public " + reply.public_ip();
  Publish(group, "", "IPAssigned", assigned, "Normal", "Pending");
  Publish(group, "", "NetworkAttached", "Joined " + reply.network() + " on bridge " + reply.bridge(), "Normal", "Pending");
  sandbox->nameservers.assign(reply.name_servers().begin(), reply.name_servers().end());
  sandbox->search_domains.assign(reply.search_domains().begin(), reply.search_domains().end());
  sandbox->dns_options.assign(reply.options().begin(), reply.options().end());
  sandbox->address = reply.ip();
  if (auto error = runtime_.CreateSandbox(*sandbox)) return "SandboxFailed: " + *error;  // rewrites resolv.conf
  return std::nullopt;
}

void NodeService::Persist(const Group& group) {
  if (options_.state_dir.empty()) return;
  fs::create_directories(options_.state_dir + "/groups");
  v1::RunGroupRequest record;
  *record.mutable_group() = group.ref;
  *record.mutable_spec() = group.spec;  // secrets stay sealed on disk
  record.set_placement_generation(group.placement_generation);
  const std::string path = options_.state_dir + "/groups/" + group.ref.group_id() + ".pb";
  {
    std::ofstream out(path + ".tmp", std::ios::binary | std::ios::trunc);
    record.SerializeToOstream(&out);
  }
  fs::rename(path + ".tmp", path);
}

void NodeService::Forget(const std::string& group_id) {
  id_ranges_.Release(group_id);  // its containers and files are gone
  if (options_.state_dir.empty()) return;
  std::error_code ec;
  fs::remove(options_.state_dir + "/groups/" + group_id + ".pb", ec);
  fs::remove(options_.state_dir + "/groups/" + group_id + ".restarts", ec);
}

// groups/<id>.restarts: one "<container> <restart count> <back-off ms>" line per container.
void NodeService::RestartsChanged(const std::string& group_id, const std::string& container, int restart_count,
                                  std::chrono::milliseconds backoff) {
  if (options_.state_dir.empty()) return;
  const std::string path = options_.state_dir + "/groups/" + group_id + ".restarts";
  std::map<std::string, RestartRecord> records = ReadRestarts(path);
  records[container] = {restart_count, backoff};
  {
    std::ofstream out(path + ".tmp", std::ios::trunc);
    for (const auto& [name, record] : records) out << name << ' ' << record.restart_count << ' ' << record.backoff.count() << '\n';
  }
  std::error_code ec;
  fs::rename(path + ".tmp", path, ec);
}

std::map<std::string, RestartRecord> ReadRestarts(const std::string& path) {
  std::map<std::string, RestartRecord> records;
  std::ifstream in(path);
  std::string name;
  int count = 0;
  int64_t backoff_ms = 0;
  while (in >> name >> count >> backoff_ms) {
    if (count >= 0 && backoff_ms >= 0) records[name] = {count, std::chrono::milliseconds(backoff_ms)};
  }
  return records;
}

// Prepares the group (outside the lock: pulls can take long) and hands it to a supervisor.
std::optional<std::string> NodeService::Launch(Group& group, bool adopt_existing) {
  Group prepared;
  prepared.ref = group.ref;
  prepared.spec = group.spec;
  prepared.placement_generation = group.placement_generation;
  prepared.claim_spare = !adopt_existing;
  GroupPlan plan;
  auto error = Prepare(prepared, &plan);
  if (prepared.from_standby) {
    Publish(prepared, "", "SandboxReady", "The sandbox came from the node's standby pool", "Normal", "Pending");
  }
  plan.adopt_existing = adopt_existing;
  if (!options_.state_dir.empty()) {
    const std::string restarts = options_.state_dir + "/groups/" + group.ref.group_id() + ".restarts";
    if (adopt_existing) {
      plan.restored_restarts = ReadRestarts(restarts);
    } else {
      std::error_code ec;
      fs::remove(restarts, ec);  // a fresh run counts from zero
    }
  }
  std::lock_guard lock(mutex_);
  group.mounts = prepared.mounts;
  group.capped_volumes = prepared.capped_volumes;
  group.capped_layers = prepared.capped_layers;
  group.cpu = prepared.cpu;
  group.memory_gb = prepared.memory_gb;
  if (error) return error;
  group.supervisor = std::make_unique<GroupSupervisor>(std::move(plan), runtime_, *this, probes_.get());
  group.supervisor->Tick(GroupSupervisor::Clock::now());
  return std::nullopt;
}

v1::NodeCommandReply NodeService::Run(const v1::RunGroupRequest& request) {
  v1::NodeCommandReply reply;
  const std::string group_id = request.group().group_id();
  if (!crypto::IsUuid(group_id)) {
    reply.set_error_code("InvalidRequest");
    reply.set_error_message("The group id must be a UUID.");
    return reply;
  }
  Group* group = nullptr;
  const auto deadline = GroupSupervisor::Clock::now() + options_.stop_grace + std::chrono::seconds(10);
  for (;;) {
    std::unique_lock lock(mutex_);
    auto it = groups_.find(group_id);
    if (it == groups_.end()) break;
    if (it->second.placement_generation >= request.placement_generation()) {
      reply.set_ok(true);  // idempotent: this placement (or a newer one) already runs here
      return reply;
    }
    // An older placement of the group (its spec changed, or it came back here): it goes first.
    if (it->second.supervisor && !it->second.supervisor->Deleted()) {
      it->second.supervisor->Delete(GroupSupervisor::Clock::now());
    }
    lock.unlock();
    if (GroupSupervisor::Clock::now() > deadline) {
      reply.set_error_code("NodeBusy");
      reply.set_error_message("An older copy of the group did not stop in time.");
      return reply;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  {
    std::lock_guard lock(mutex_);
    group = &groups_[group_id];  // std::map nodes stay put
    group->ref = request.group();
    group->spec = request.spec();
    group->placement_generation = request.placement_generation();
  }
  Persist(*group);
  if (auto error = Launch(*group, false)) {
    std::lock_guard lock(mutex_);
    std::string code = error->substr(0, error->find(':'));
    Publish(*group, "", "Failed", *error, "Warning", "Failed");
    Cleanup(*group);
    Forget(group_id);
    groups_.erase(group_id);
    reply.set_error_code(code);
    reply.set_error_message(*error);
    return reply;
  }
  reply.set_ok(true);
  return reply;
}

v1::NodeCommandReply NodeService::Restart(const std::string& group_id) {
  // As ACI: every container stops (SIGTERM, grace, SIGKILL) and the group starts again in place,
  // with the same sandbox, volumes and address.
  v1::NodeCommandReply reply = Stop(group_id);
  if (!reply.ok()) return reply;
  const auto deadline = GroupSupervisor::Clock::now() + options_.stop_grace + std::chrono::seconds(10);
  events::v1::GroupRef ref;
  int64_t generation = 0;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      auto it = groups_.find(group_id);
      if (it == groups_.end() || !it->second.supervisor) {
        reply.set_ok(false);
        reply.set_error_code("GroupNotFound");
        reply.set_error_message("The group " + group_id + " was deleted while it restarted.");
        return reply;
      }
      if (it->second.supervisor->Quiet()) {
        ref = it->second.ref;
        generation = it->second.placement_generation;
        break;
      }
    }
    if (GroupSupervisor::Clock::now() > deadline) {
      reply.set_ok(false);
      reply.set_error_code("RestartTimedOut");
      reply.set_error_message("The group's containers did not stop in time.");
      return reply;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Publish(ref, generation, "", "Restarting", "Restarting the container group", "Normal", "Pending");
  return Start(group_id, true);
}

v1::NodeCommandReply NodeService::Start(const std::string& group_id, bool even_if_ended) {
  v1::NodeCommandReply reply;
  Group* group = nullptr;
  // A start right after a stop finds the containers still ending (their grace period): it waits
  // for the stop to finish rather than answering "already started" and doing nothing.
  const auto deadline = GroupSupervisor::Clock::now() + options_.stop_grace + std::chrono::seconds(10);
  for (;;) {
    std::unique_lock lock(mutex_);
    auto it = groups_.find(group_id);
    if (it == groups_.end() || !it->second.supervisor) {
      reply.set_error_code("GroupNotFound");
      reply.set_error_message("The group " + group_id + " is not on this node.");
      return reply;
    }
    auto& supervisor = *it->second.supervisor;
    if (supervisor.State() == "Stopped" || (even_if_ended && supervisor.Quiet())) {
      group = &it->second;
      group->supervisor.reset();
      break;
    }
    if (!supervisor.StopRequested()) {
      reply.set_ok(true);  // already started
      return reply;
    }
    lock.unlock();
    if (GroupSupervisor::Clock::now() > deadline) {
      reply.set_error_code("NodeBusy");
      reply.set_error_message("The group's containers did not stop in time to start again.");
      return reply;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (auto error = Launch(*group, false)) {
    reply.set_error_code(error->substr(0, error->find(':')));
    reply.set_error_message(*error);
    return reply;
  }
  reply.set_ok(true);
  return reply;
}

int NodeService::Restore() {
  if (options_.state_dir.empty() || !fs::exists(options_.state_dir + "/groups")) return 0;
  int restored = 0;
  for (const auto& entry : fs::directory_iterator(options_.state_dir + "/groups")) {
    if (entry.path().extension() != ".pb") continue;
    v1::RunGroupRequest record;
    std::ifstream in(entry.path(), std::ios::binary);
    if (!record.ParseFromIstream(&in)) continue;
    Group* group = nullptr;
    {
      std::lock_guard lock(mutex_);
      group = &groups_[record.group().group_id()];
      group->ref = record.group();
      group->spec = record.spec();
      group->placement_generation = record.placement_generation();
    }
    if (auto error = Launch(*group, true)) {
      Publish(*group, "", "Failed", "After a node restart: " + *error, "Warning", "Failed");
      continue;
    }
    ++restored;
  }
  return restored;
}

void NodeService::Cleanup(Group& group) {
  for (const auto& [image, container_id] : group.mounts) images_.Unmount(image, container_id);
  for (const auto& [image, container_id] : group.mounts) {
    images_.Release(image, group.ref.group_id() + "/" + container_id.substr(container_id.find('_') + 1));
  }
  group.mounts.clear();
  if (network_) {
    // Only this copy's namespace: a newer copy on another node of this host keeps its address.
    network::v1::DetachRequest detach;
    detach.set_group_id(group.ref.group_id());
    detach.set_netns_path(runtime_.NetworkNamespace(group.ref.group_id()));
    detach.set_node_id(options_.node_id);
    auto reply = network_->Detach(detach);
    if (reply.ok()) {
      Publish(group, "", "NetworkDetached", "Left the network", "Normal", "");  // "": the state stays
    } else {
      // The network service's reconcile removes what is left once the namespace is gone.
      Publish(group, "", "NetworkDetached", "Detach failed (reconciled later): " + reply.error_message(), "Warning", "");
    }
  }
  runtime_.DeleteSandbox(group.ref.group_id());
}

v1::NodeCommandReply NodeService::Stop(const std::string& group_id) {
  v1::NodeCommandReply reply;
  std::lock_guard lock(mutex_);
  auto it = groups_.find(group_id);
  if (it == groups_.end() || !it->second.supervisor) {
    reply.set_error_code("GroupNotFound");
    reply.set_error_message("The group " + group_id + " does not run on this node.");
    return reply;
  }
  it->second.supervisor->Stop(GroupSupervisor::Clock::now());
  reply.set_ok(true);
  return reply;
}

v1::NodeCommandReply NodeService::Delete(const std::string& group_id, int64_t placement_generation) {
  v1::NodeCommandReply reply;
  std::lock_guard lock(mutex_);
  auto it = groups_.find(group_id);
  reply.set_ok(true);  // deleting what is not here is done already
  if (it == groups_.end() || !it->second.supervisor) return reply;
  if (placement_generation > 0 && it->second.placement_generation > placement_generation) {
    reply.set_ok(false);
    reply.set_error_code("Superseded");
    reply.set_error_message("A newer placement of the group runs here; the delete was for an older one.");
    return reply;
  }
  it->second.supervisor->Delete(GroupSupervisor::Clock::now());
  return reply;
}

void NodeService::DropSpares() {
  std::deque<std::string> spares;
  {
    std::lock_guard lock(spares_mutex_);
    spares.swap(spares_);
  }
  for (const auto& spare : spares) DropSpare(spare);
}

void NodeService::DropSpare(const std::string& spare) {
  runtime_.DeleteSandbox(spare);
  id_ranges_.Release(spare);
}

size_t NodeService::SpareSandboxes() {
  std::lock_guard lock(spares_mutex_);
  return spares_.size();
}

void NodeService::Tick(GroupSupervisor::Clock::time_point now) {
  SweepStreams(now);
  if (SpareSandboxes() < static_cast<size_t>(options_.standby_sandboxes)) {
    // One spare per tick, so a tick stays short; the pool refills within a second or so.
    const std::string spare = "standby-" + crypto::NewUuid();
    std::optional<confine::IdRange> ids;
    if (options_.user_namespaces.enabled) ids = id_ranges_.Acquire(spare);
    if ((ids || !options_.user_namespaces.enabled) && !runtime_.CreateSpare(spare, ids)) {
      std::lock_guard lock(spares_mutex_);
      spares_.push_back(spare);
    } else {
      DropSpare(spare);
    }
  }
  std::lock_guard lock(mutex_);
  const bool check_volumes = now - last_volume_check_ >= std::chrono::seconds(1);
  if (check_volumes) last_volume_check_ = now;
  for (auto it = groups_.begin(); it != groups_.end();) {
    auto& group = it->second;
    if (group.supervisor) group.supervisor->Tick(now);
    if (check_volumes && group.supervisor) CheckVolumeCaps(group);
    if (group.supervisor && group.supervisor->Deleted()) {
      Cleanup(group);
      Forget(group.ref.group_id());
      Publish(group, "", "Deleted", "The group was removed from node " + options_.node_id, "Normal", "Deleted");
      it = groups_.erase(it);
    } else {
      ++it;
    }
  }
}

void NodeService::CheckVolumeCaps(Group& group) {
  // Once per fill: an event when a capped tmpfs has no room left, again only after it had room.
  auto check = [&](const std::string& key, const std::string& path, const std::string& container,
                   const std::string& name, const std::function<std::string(uint64_t cap_mib)>& message) {
    struct statvfs space {};
    if (::statvfs(path.c_str(), &space) != 0 || space.f_blocks == 0) return;
    const uint64_t free_bytes = static_cast<uint64_t>(space.f_bavail) * space.f_frsize;
    if (free_bytes < (64u << 10)) {
      if (group.full_volumes.insert(key).second) {
        Publish(group, container, name, message((static_cast<uint64_t>(space.f_blocks) * space.f_frsize) >> 20),
                "Warning", group.supervisor->State());
      }
    } else if (space.f_bavail * 10 > space.f_blocks) {
      group.full_volumes.erase(key);
    }
  };
  for (const auto& [container, path] : group.capped_layers) {
    check("layer:" + container, path, container, "WritableLayerFull", [&](uint64_t cap_mib) {
      return "The writable layer of container '" + container + "' is full: it holds at most " +
             std::to_string(cap_mib) + " MiB on this node (writes to its root file system fail; use a volume)";
    });
  }
  for (const auto& [name, path] : group.capped_volumes) {
    check(name, path, "", "VolumeFull", [&](uint64_t) {
      return "The emptyDir volume '" + name + "' is full: it holds at most " +
             std::to_string(options_.volumes.empty_dir_max_bytes >> 20) + " MiB on this node";
    });
  }
}

v1::NodeHeartbeat NodeService::Heartbeat() {
  // A runtime call may hold the lock for seconds (a microVM booting under TCG for a restart):
  // the node stays alive to the scheduler with its last picture, newly stamped.
  std::unique_lock lock(mutex_, std::defer_lock);
  for (int attempt = 0; attempt < 20 && !lock.try_lock(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!lock.owns_lock()) {
    std::lock_guard last(heartbeat_mutex_);
    v1::NodeHeartbeat heartbeat = last_heartbeat_;
    *heartbeat.mutable_sent_at() = Now();
    return heartbeat;
  }
  v1::NodeHeartbeat heartbeat;
  heartbeat.set_node_id(options_.node_id);
  heartbeat.set_zone(options_.zone);
  heartbeat.set_cpu_capacity(options_.cpu_capacity);
  heartbeat.set_memory_gb_capacity(options_.memory_gb_capacity);
  heartbeat.set_os_type("Linux");
  heartbeat.set_microvm(options_.microvm);
  heartbeat.set_standby_sandboxes(static_cast<int32_t>(SpareSandboxes()));
  for (const auto& [id, group] : groups_) {
    heartbeat.add_group_ids(id);
    auto* placed = heartbeat.add_placed();
    placed->set_group_id(id);
    placed->set_placement_generation(group.placement_generation);
    heartbeat.set_cpu_allocated(heartbeat.cpu_allocated() + group.cpu);
    heartbeat.set_memory_gb_allocated(heartbeat.memory_gb_allocated() + group.memory_gb);
  }
  *heartbeat.mutable_sent_at() = Now();
  std::lock_guard last(heartbeat_mutex_);
  last_heartbeat_ = heartbeat;
  return heartbeat;
}

v1::NodeUsage NodeService::Usage(const std::string& cgroup_root) {
  std::lock_guard lock(mutex_);
  v1::NodeUsage usage;
  usage.set_node_id(options_.node_id);
  *usage.mutable_sent_at() = Now();
  for (const auto& [id, group] : groups_) {
    if (!group.supervisor) continue;
    for (const auto& [name, status] : group.supervisor->Containers()) {
      if (status.state != "Running") continue;
      std::optional<skiff::node::Usage> measured;
      if (auto inside = runtime_.UsageOf(id, name)) {
        measured = skiff::node::Usage{inside->first, inside->second};
      } else {
        measured = ReadUsage(cgroup_root, CgroupPath(id, name, options_.host_tag));
      }
      if (!measured) continue;
      auto* container = usage.add_containers();
      *container->mutable_group() = group.ref;
      container->set_container(name);
      container->set_cpu_seconds(measured->cpu_seconds);
      container->set_memory_bytes(measured->memory_bytes);
    }
  }
  return usage;
}

std::optional<v1::LogsReply> NodeService::Logs(const v1::LogsRequest& request) {
  std::lock_guard lock(mutex_);
  auto it = groups_.find(request.group_id());
  if (it == groups_.end() || !it->second.supervisor) return std::nullopt;
  const auto& containers = it->second.supervisor->Containers();
  v1::LogsReply reply;
  if (!containers.count(request.container())) return reply;  // the group is here; the container is not
  reply.set_found(true);
  reply.set_content(ReadLogs(runtime_.LogPath(request.group_id(), request.container()), std::max(0, request.tail()),
                             request.timestamps()));
  return reply;
}

std::optional<std::string> NodeService::GroupState(const std::string& group_id) {
  std::lock_guard lock(mutex_);
  auto it = groups_.find(group_id);
  if (it == groups_.end() || !it->second.supervisor) return std::nullopt;
  return it->second.supervisor->State();
}

// What a session's reader thread needs: it outlives the session's map entry until joined.
struct NodeService::StreamState {
  std::string session_id;
  StreamTransport* transport = nullptr;
  std::atomic<uint64_t> seq{0};
  void Send(std::string_view data, bool ended = false, int exit_code = 0) {
    if (!transport) return;
    v1::StreamOutput output;
    output.set_seq(++seq);
    output.set_data(std::string(data));
    output.set_ended(ended);
    output.set_exit_code(exit_code);
    transport->Output(session_id, output);
  }
};

std::optional<v1::StreamReply> NodeService::CheckStreamTarget(const std::string& session_id,
                                                              const std::string& group_id,
                                                              const std::string& container) {
  std::lock_guard lock(mutex_);
  auto it = groups_.find(group_id);
  if (it == groups_.end() || !it->second.supervisor) return std::nullopt;
  v1::StreamReply reply;
  reply.set_found(true);
  const auto& containers = it->second.supervisor->Containers();
  bool in_use = false;
  {
    std::lock_guard streams_lock(streams_mutex_);
    in_use = streams_.count(session_id) > 0;
  }
  if (session_id.empty() || session_id.find_first_of(".*> \t") != std::string::npos || in_use) {
    reply.set_error_code("InvalidSession");
    reply.set_error_message("The session id must be a plain NATS subject token not already in use.");
  } else if (!containers.count(container)) {
    reply.set_error_code("ContainerNotFound");
    reply.set_error_message("The container '" + container + "' is not in the container group.");
  }
  return reply;
}

std::optional<v1::StreamReply> NodeService::Exec(const v1::ExecRequest& request) {
  auto reply = CheckStreamTarget(request.session_id(), request.group_id(), request.container());
  if (!reply || !reply->error_code().empty()) return reply;
  auto state = std::make_shared<StreamState>();
  state->session_id = request.session_id();
  state->transport = transport_;
  ExecSpec spec;
  spec.command.assign(request.command().begin(), request.command().end());
  spec.tty = request.tty();
  if (request.rows() > 0 && request.rows() < 65536) spec.rows = static_cast<uint16_t>(request.rows());
  if (request.cols() > 0 && request.cols() < 65536) spec.cols = static_cast<uint16_t>(request.cols());
  // The transport must hear of the session before the first output can arrive.
  if (transport_) transport_->Opened(request.session_id());
  std::string error;
  auto exec = runtime_.Exec(request.group_id(), request.container(), spec,
                            {[state](std::string_view data) { state->Send(data); },
                             [state](int code) { state->Send({}, true, code); }},
                            &error);
  if (!exec) {
    if (transport_) transport_->Closed(request.session_id());
    reply->set_error_code("ExecFailed");
    reply->set_error_message("Cannot run the command: " + error);
    return reply;
  }
  std::lock_guard lock(streams_mutex_);
  streams_[request.session_id()] = StreamSession{state, std::move(exec), nullptr, GroupSupervisor::Clock::now()};
  reply->set_ok(true);
  return reply;
}

std::optional<v1::StreamReply> NodeService::Attach(const v1::AttachRequest& request) {
  auto reply = CheckStreamTarget(request.session_id(), request.group_id(), request.container());
  if (!reply || !reply->error_code().empty()) return reply;
  auto state = std::make_shared<StreamState>();
  state->session_id = request.session_id();
  state->transport = transport_;
  if (transport_) transport_->Opened(request.session_id());
  const std::string group_id = request.group_id(), container = request.container();
  SandboxRuntime* runtime = &runtime_;
  auto follower = std::make_unique<LogFollower>(
      runtime_.LogPath(group_id, container), std::max(0, request.tail()), request.timestamps(),
      [runtime, group_id, container] { return runtime->IsRunning(group_id, container); },
      [state](std::string_view data) { state->Send(data); },
      [state, runtime, group_id, container] {
        auto exit = runtime->ExitOf(group_id, container);
        state->Send({}, true, exit ? (exit->oom_killed ? 137 : exit->exit_code) : 0);
      });
  std::lock_guard lock(streams_mutex_);
  streams_[request.session_id()] = StreamSession{state, nullptr, std::move(follower), GroupSupervisor::Clock::now()};
  reply->set_ok(true);
  return reply;
}

void NodeService::Input(const std::string& session_id, const v1::StreamInput& input) {
  std::lock_guard lock(streams_mutex_);
  auto it = streams_.find(session_id);
  if (it == streams_.end()) return;
  auto& session = it->second;
  session.last_heard = GroupSupervisor::Clock::now();
  if (input.terminate()) {
    session.terminated = true;
    if (session.exec) session.exec->Kill();
    return;
  }
  if (!session.exec) return;  // attach takes no input
  if (input.rows() > 0 && input.cols() > 0 && input.rows() < 65536 && input.cols() < 65536) {
    session.exec->Resize(static_cast<uint16_t>(input.rows()), static_cast<uint16_t>(input.cols()));
  }
  if (!input.data().empty()) session.exec->Write(input.data());
  if (input.close_input()) session.exec->CloseInput();
}

void NodeService::SweepStreams(GroupSupervisor::Clock::time_point now) {
  std::vector<std::pair<std::string, StreamSession>> ended;
  {
    std::lock_guard lock(streams_mutex_);
    for (auto it = streams_.begin(); it != streams_.end();) {
      auto& session = it->second;
      const bool done = session.exec ? session.exec->Done() : session.follower->Done();
      const bool abandoned = now - session.last_heard > options_.stream_idle_timeout;
      if (done || abandoned || session.terminated) {
        if (session.exec && !done) session.exec->Kill();
        ended.emplace_back(it->first, std::move(session));
        it = streams_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [id, session] : ended) {
    session.exec.reset();      // waits for the reader, which sends the last output
    session.follower.reset();
    if (transport_) transport_->Closed(id);
  }
}

size_t NodeService::OpenStreams() {
  std::lock_guard lock(streams_mutex_);
  return streams_.size();
}

}  // namespace skiff::node
