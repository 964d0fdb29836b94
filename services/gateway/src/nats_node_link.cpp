#include "skiff/gateway/nats_node_link.h"

#include <vector>

#include "skiff/bus/nats_bus.h"
#include "skiff/bus/subjects.h"

namespace skiff::gateway {

NatsNodeLink::NatsNodeLink(bus::NatsBus& bus, std::chrono::milliseconds timeout, std::chrono::milliseconds keepalive)
    : bus_(bus), timeout_(timeout), keepalive_(keepalive) {
  keepalive_thread_ = std::thread([this] {
    node::v1::StreamInput ping;
    ping.set_keepalive(true);
    const std::string payload = ping.SerializeAsString();
    std::unique_lock lock(mutex_);
    while (!stop_cv_.wait_for(lock, keepalive_, [this] { return stopping_; })) {
      std::vector<std::string> inputs;
      for (const auto& [id, stream] : streams_) inputs.push_back(subjects::StreamIn(stream.node_id, id));
      lock.unlock();
      for (const auto& subject : inputs) bus_.PublishCore(subject, payload);
      lock.lock();
    }
  });
}

NatsNodeLink::~NatsNodeLink() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  keepalive_thread_.join();
}

std::optional<node::v1::LogsReply> NatsNodeLink::ContainerLogs(const node::v1::LogsRequest& request) {
  if (request.node_id().empty()) return std::nullopt;
  auto answer = bus_.Request("skiff.node." + request.node_id() + ".logs", request.SerializeAsString(), timeout_);
  node::v1::LogsReply reply;
  if (!answer || !reply.ParseFromString(*answer)) return std::nullopt;
  return reply;
}

std::optional<node::v1::StreamReply> NatsNodeLink::Open(const std::string& node_id, const std::string& verb,
                                                        const std::string& session_id, const std::string& request,
                                                        OutputHandler on_output) {
  if (node_id.empty()) return std::nullopt;
  // Listen first: the node may send output before its reply arrives here. Only the group's node
  // may publish on this subject.
  auto sub = bus_.Subscribe(subjects::StreamOut(node_id, session_id),
                            [on_output](const std::string&, const std::string& data) {
                              node::v1::StreamOutput output;
                              if (output.ParseFromString(data)) on_output(output);
                            });
  {
    std::lock_guard lock(mutex_);
    streams_[session_id] = {node_id, std::move(sub)};
  }
  auto answer = bus_.Request("skiff.node." + node_id + "." + verb, request, timeout_);
  node::v1::StreamReply reply;
  if (!answer || !reply.ParseFromString(*answer)) return std::nullopt;
  return reply;
}

std::optional<node::v1::StreamReply> NatsNodeLink::OpenExec(const node::v1::ExecRequest& request,
                                                            OutputHandler on_output) {
  return Open(request.node_id(), "exec", request.session_id(), request.SerializeAsString(), std::move(on_output));
}

std::optional<node::v1::StreamReply> NatsNodeLink::OpenAttach(const node::v1::AttachRequest& request,
                                                              OutputHandler on_output) {
  return Open(request.node_id(), "attach", request.session_id(), request.SerializeAsString(), std::move(on_output));
}

void NatsNodeLink::SendInput(const std::string& session_id, const node::v1::StreamInput& input) {
  std::string subject;
  {
    std::lock_guard lock(mutex_);
    auto it = streams_.find(session_id);
    if (it == streams_.end()) return;
    subject = subjects::StreamIn(it->second.node_id, session_id);
  }
  bus_.PublishCore(subject, input.SerializeAsString());
}

void NatsNodeLink::CloseStream(const std::string& session_id) {
  std::unique_ptr<bus::Subscription> sub;
  {
    std::lock_guard lock(mutex_);
    auto it = streams_.find(session_id);
    if (it == streams_.end()) return;
    sub = std::move(it->second.output);
    streams_.erase(it);
  }
}

std::optional<node::v1::NodeCommandReply> NatsNodeLink::GroupCommand(const std::string& node_id,
                                                                     const std::string& verb,
                                                                     const node::v1::GroupCommandRequest& request) {
  // A stop waits for the containers' grace period: give the node that long and more.
  auto answer = bus_.Request("skiff.node." + node_id + "." + verb, request.SerializeAsString(),
                             std::max(timeout_, std::chrono::milliseconds(60000)));
  node::v1::NodeCommandReply reply;
  if (!answer || !reply.ParseFromString(*answer)) return std::nullopt;
  return reply;
}

}  // namespace skiff::gateway
