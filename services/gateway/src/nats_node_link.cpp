#include "skiff/gateway/nats_node_link.h"

#include <vector>

#include "skiff/bus/nats_bus.h"

namespace skiff::gateway {

NatsNodeLink::NatsNodeLink(bus::NatsBus& bus, std::chrono::milliseconds timeout, std::chrono::milliseconds keepalive)
    : bus_(bus), timeout_(timeout), keepalive_(keepalive) {
  keepalive_thread_ = std::thread([this] {
    node::v1::StreamInput ping;
    ping.set_keepalive(true);
    const std::string payload = ping.SerializeAsString();
    std::unique_lock lock(mutex_);
    while (!stop_cv_.wait_for(lock, keepalive_, [this] { return stopping_; })) {
      std::vector<std::string> sessions;
      for (const auto& [id, sub] : streams_) sessions.push_back(id);
      lock.unlock();
      for (const auto& id : sessions) bus_.PublishCore("skiff.stream." + id + ".in", payload);
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
  auto answer = bus_.Request("skiff.node.logs", request.SerializeAsString(), timeout_);
  node::v1::LogsReply reply;
  if (!answer || !reply.ParseFromString(*answer)) return std::nullopt;
  return reply;
}

std::optional<node::v1::StreamReply> NatsNodeLink::Open(const std::string& subject, const std::string& session_id,
                                                        const std::string& request, OutputHandler on_output) {
  // Listen first: the node may send output before its reply arrives here.
  auto sub = bus_.Subscribe("skiff.stream." + session_id + ".out",
                            [on_output](const std::string&, const std::string& data) {
                              node::v1::StreamOutput output;
                              if (output.ParseFromString(data)) on_output(output);
                            });
  {
    std::lock_guard lock(mutex_);
    streams_[session_id] = std::move(sub);
  }
  auto answer = bus_.Request(subject, request, timeout_);
  node::v1::StreamReply reply;
  if (!answer || !reply.ParseFromString(*answer)) return std::nullopt;
  return reply;
}

std::optional<node::v1::StreamReply> NatsNodeLink::OpenExec(const node::v1::ExecRequest& request,
                                                            OutputHandler on_output) {
  return Open("skiff.node.exec", request.session_id(), request.SerializeAsString(), std::move(on_output));
}

std::optional<node::v1::StreamReply> NatsNodeLink::OpenAttach(const node::v1::AttachRequest& request,
                                                              OutputHandler on_output) {
  return Open("skiff.node.attach", request.session_id(), request.SerializeAsString(), std::move(on_output));
}

void NatsNodeLink::SendInput(const std::string& session_id, const node::v1::StreamInput& input) {
  bus_.PublishCore("skiff.stream." + session_id + ".in", input.SerializeAsString());
}

void NatsNodeLink::CloseStream(const std::string& session_id) {
  std::unique_ptr<bus::Subscription> sub;
  {
    std::lock_guard lock(mutex_);
    auto it = streams_.find(session_id);
    if (it == streams_.end()) return;
    sub = std::move(it->second);
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
