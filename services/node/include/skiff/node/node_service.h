#pragma once

#include <functional>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "skiff/imagecache/v1/imagecache.pb.h"
#include "skiff/network/v1/network.pb.h"
#include "skiff/node/group_supervisor.h"
#include "skiff/node/id_ranges.h"
#include "skiff/node/observe.h"
#include "skiff/node/v1/node.pb.h"
#include "skiff/node/volumes.h"

namespace skiff::node {

// The node's view of the image cache (NATS requests to skiff.imagecache.<node>.* in the service).
class ImageProvider {
 public:
  virtual ~ImageProvider() = default;
  virtual imagecache::v1::EnsureImageReply Ensure(const imagecache::v1::EnsureImageRequest& request) = 0;
  // With `ids`, the rootfs is shifted into that user namespace range (idmapped layers).
  virtual imagecache::v1::MountRootfsReply Mount(const std::string& image, const std::string& container_id,
                                                 const std::optional<confine::IdRange>& ids) = 0;
  virtual void Unmount(const std::string& image, const std::string& container_id) = 0;
  virtual void Release(const std::string& image, const std::string& holder) = 0;
};

// The host's network service (NATS requests to skiff.network.<agent>.* in the service): joins
// a group's namespace to its network and takes it out again.
class NetworkProvider {
 public:
  virtual ~NetworkProvider() = default;
  virtual network::v1::AttachReply Attach(const network::v1::AttachRequest& request) = 0;
  virtual network::v1::DetachReply Detach(const network::v1::DetachRequest& request) = 0;
};

class NodeEventPublisher {
 public:
  virtual ~NodeEventPublisher() = default;
  virtual void Publish(const v1::ContainerEvent& event) = 0;
};

// Where exec and attach output goes (skiff.stream.<session>.out in the service), and the hooks
// that start and stop listening for a session's input.
class StreamTransport {
 public:
  virtual ~StreamTransport() = default;
  virtual void Output(const std::string& session_id, const v1::StreamOutput& output) = 0;
  virtual void Opened(const std::string& session_id) = 0;
  virtual void Closed(const std::string& session_id) = 0;
};

struct NodeOptions {
  std::string node_id;
  std::string zone;
  std::string host_tag = "skiff";  // as RuncRuntimeOptions::host_tag
  double cpu_capacity = 2;
  double memory_gb_capacity = 4;
  VolumeOptions volumes;  // how tenants' volumes are confined (share store, clones, caps)
  std::string state_dir;    // groups/<id>.pb: what this node runs, reloaded after a restart
  RestartTracker::Options backoff;
  std::chrono::milliseconds stop_grace{10000};
  // An exec or attach session whose caller sent nothing (not even a keepalive) for this long ends.
  std::chrono::milliseconds stream_idle_timeout{60000};
  // Standby pool: this many spare sandboxes (directories and network namespace made ahead) are
  // kept ready; a new group takes one instead of setting its sandbox up.
  int standby_sandboxes = 0;
  // The runtime runs MicroVM groups too (an IsolatingRuntime over a MicroVmRuntime): heartbeats
  // offer it, so the scheduler places such groups here.
  bool microvm = false;
  // runc groups in user namespaces, each with a host id range of its own (id_ranges.h).
  UserNamespaceOptions user_namespaces;
};

// Turns groups from the scheduler into running sandboxes: ensures and mounts images, opens
// secrets (only here), prepares volumes, merges image defaults with each container's command
// and environment, and supervises the group. Events and state changes go to the publisher.
class NodeService : public SupervisorSink {
 public:
  using SecretOpener = node::SecretOpener;
  NodeService(SandboxRuntime& runtime, ImageProvider& images, NodeEventPublisher& events, SecretOpener open_secret,
              NodeOptions options);

  v1::NodeCommandReply Run(const v1::RunGroupRequest& request);
  v1::NodeCommandReply Stop(const std::string& group_id);
  // Starts a stopped group again (fresh containers, same sandbox and volumes); with
  // `even_if_ended`, also a group that succeeded or failed.
  v1::NodeCommandReply Start(const std::string& group_id, bool even_if_ended = false);
  // Stops every container, waits for them, and starts the group again in place.
  v1::NodeCommandReply Restart(const std::string& group_id);
  // Reloads the groups this node ran before it restarted; their containers are re-adopted.
  int Restore();
  // With a placement generation, only a copy at that generation or older is removed (fencing: a
  // newer placement of the group on this node stays).
  v1::NodeCommandReply Delete(const std::string& group_id, int64_t placement_generation = 0);
  void Tick(GroupSupervisor::Clock::time_point now);
  v1::NodeHeartbeat Heartbeat();
  // Cumulative cpu and current memory of every running container, from cgroups.
  v1::NodeUsage Usage(const std::string& cgroup_root = "/sys/fs/cgroup");
  // nullopt when the group is not on this node.
  std::optional<v1::LogsReply> Logs(const v1::LogsRequest& request);
  std::optional<std::string> GroupState(const std::string& group_id);

  // Exec and attach sessions (nullopt: the group is not on this node). Output goes to the
  // transport; Input() feeds a session; Tick() ends finished and abandoned sessions.
  void SetStreamTransport(StreamTransport* transport) { transport_ = transport; }
  // Without a network provider a group's namespace has loopback only.
  void SetNetwork(NetworkProvider* network) { network_ = network; }
  std::optional<v1::StreamReply> Exec(const v1::ExecRequest& request);
  std::optional<v1::StreamReply> Attach(const v1::AttachRequest& request);
  void Input(const std::string& session_id, const v1::StreamInput& input);
  size_t OpenStreams();
  size_t SpareSandboxes();
  // Removes the spare sandboxes (at shutdown: namespaces should not outlive the node).
  void DropSpares();

  // SupervisorSink
  void Event(const SupervisorEvent& event) override;
  void GroupStateChanged(const std::string& group_id, const std::string& state) override;
  void RestartsChanged(const std::string& group_id, const std::string& container, int restart_count,
                       std::chrono::milliseconds backoff) override;

 private:
  struct Group {
    events::v1::GroupRef ref;
    containerinstance::v1::ContainerGroup spec;
    std::unique_ptr<GroupSupervisor> supervisor;
    std::vector<std::pair<std::string, std::string>> mounts;  // (image, container id) to unmount
    double cpu = 0, memory_gb = 0;
    int64_t placement_generation = 0;
    bool claim_spare = false;   // a fresh run: may take a spare sandbox
    bool from_standby = false;  // it did
    std::map<std::string, std::string> capped_volumes;  // emptyDir name -> its tmpfs on the host
    std::map<std::string, std::string> capped_layers;   // container -> its writable layer's tmpfs
    std::set<std::string> full_volumes;                  // told as VolumeFull, until space frees up
  };
  // Publishes VolumeFull (once, until it has room again) for a capped volume with no space left.
  void CheckVolumeCaps(Group& group);
  void Publish(const Group& group, const std::string& container, const std::string& name,
               const std::string& message, const std::string& type, const std::string& state);
  void Publish(const events::v1::GroupRef& ref, int64_t placement_generation, const std::string& container,
               const std::string& name, const std::string& message, const std::string& type, const std::string& state);
  v1::ContainerEvent NewEvent(const events::v1::GroupRef& ref, int64_t placement_generation, const std::string& container,
                              const std::string& name, const std::string& message, const std::string& type,
                              const std::string& state);
  std::optional<std::string> Prepare(Group& group, GroupPlan* plan);
  void DropSpare(const std::string& spare);  // its sandbox and its id range
  std::optional<std::string> AttachNetwork(Group& group, SandboxSpec* sandbox);
  void Cleanup(Group& group);
  std::optional<std::string> Launch(Group& group, bool adopt_existing);
  void Persist(const Group& group);
  void Forget(const std::string& group_id);

  struct StreamState;
  struct StreamSession {
    std::shared_ptr<StreamState> state;
    std::unique_ptr<ExecProcess> exec;
    std::unique_ptr<LogFollower> follower;
    GroupSupervisor::Clock::time_point last_heard;
    bool terminated = false;
  };
  std::optional<v1::StreamReply> CheckStreamTarget(const std::string& session_id, const std::string& group_id,
                                                   const std::string& container);
  void SweepStreams(GroupSupervisor::Clock::time_point now);

  SandboxRuntime& runtime_;
  std::unique_ptr<ProbeRunner> probes_;
  ImageProvider& images_;
  NodeEventPublisher& events_;
  SecretOpener open_secret_;
  NodeOptions options_;
  IdRangeAllocator id_ranges_;
  std::mutex mutex_;
  std::mutex heartbeat_mutex_;
  v1::NodeHeartbeat last_heartbeat_;  // sent again, restamped, while mutex_ is held long
  std::map<std::string, Group> groups_;
  StreamTransport* transport_ = nullptr;
  NetworkProvider* network_ = nullptr;
  std::mutex streams_mutex_;  // apart from mutex_: ending a session joins its reader thread
  std::map<std::string, StreamSession> streams_;
  std::mutex spares_mutex_;
  std::deque<std::string> spares_;
  GroupSupervisor::Clock::time_point last_volume_check_{};
};

// A node's saved restart counts and back-offs of one group (see NodeService::RestartsChanged).
std::map<std::string, RestartRecord> ReadRestarts(const std::string& path);


}  // namespace skiff::node
