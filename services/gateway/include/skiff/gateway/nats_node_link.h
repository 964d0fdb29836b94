#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "skiff/gateway/container_streams.h"

namespace skiff::bus {
class NatsBus;
class Subscription;
}  // namespace skiff::bus

namespace skiff::gateway {

// NodeLink over NATS: skiff.node.<node>.logs|exec|attach asked of the group's node; stream
// output heard on skiff.stream.<node>.<session>.out (only that node may publish there), input
// sent on .in, with a keepalive for every open session so a node ends the sessions of a gateway
// that went away.
class NatsNodeLink : public NodeLink {
 public:
  NatsNodeLink(bus::NatsBus& bus, std::chrono::milliseconds timeout,
               std::chrono::milliseconds keepalive = std::chrono::seconds(20));
  ~NatsNodeLink() override;
  std::optional<node::v1::LogsReply> ContainerLogs(const node::v1::LogsRequest& request) override;
  std::optional<node::v1::StreamReply> OpenExec(const node::v1::ExecRequest& request, OutputHandler on_output) override;
  std::optional<node::v1::StreamReply> OpenAttach(const node::v1::AttachRequest& request,
                                                  OutputHandler on_output) override;
  void SendInput(const std::string& session_id, const node::v1::StreamInput& input) override;
  void CloseStream(const std::string& session_id) override;
  std::optional<node::v1::NodeCommandReply> GroupCommand(const std::string& node_id, const std::string& verb,
                                                         const node::v1::GroupCommandRequest& request) override;

 private:
  std::optional<node::v1::StreamReply> Open(const std::string& node_id, const std::string& verb,
                                            const std::string& session_id, const std::string& request,
                                            OutputHandler on_output);
  struct OpenStream {
    std::string node_id;
    std::unique_ptr<bus::Subscription> output;
  };
  bus::NatsBus& bus_;
  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds keepalive_;
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::map<std::string, OpenStream> streams_;
  std::thread keepalive_thread_;
};

}  // namespace skiff::gateway
