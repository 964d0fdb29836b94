#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "skiff/gateway/https_server.h"
#include "skiff/node/v1/node.pb.h"

namespace skiff::gateway {

// The nodes as the gateway reaches them: asked on shared subjects, answered by the node that has
// the group (NATS in the service, a fake in tests).
class NodeLink {
 public:
  virtual ~NodeLink() = default;
  // nullopt: no node has the group.
  virtual std::optional<node::v1::LogsReply> ContainerLogs(const node::v1::LogsRequest& request) = 0;
  // Listens for the session's output, then asks the nodes to start it. nullopt: no node answered.
  // `on_output` is called in order until an output with `ended`, or until CloseStream.
  using OutputHandler = std::function<void(const node::v1::StreamOutput&)>;
  virtual std::optional<node::v1::StreamReply> OpenExec(const node::v1::ExecRequest& request, OutputHandler on_output) = 0;
  virtual std::optional<node::v1::StreamReply> OpenAttach(const node::v1::AttachRequest& request,
                                                          OutputHandler on_output) = 0;
  virtual void SendInput(const std::string& session_id, const node::v1::StreamInput& input) = 0;
  virtual void CloseStream(const std::string& session_id) = 0;
  // stop | start | restart of the group on `node_id`. nullopt: the node did not answer.
  virtual std::optional<node::v1::NodeCommandReply> GroupCommand(const std::string& node_id, const std::string& verb,
                                                                 const node::v1::GroupCommandRequest& request) = 0;
};

// What an exec or attach call hands out: the WebSocket URL's token and the password the client
// sends as its first message (as ACI does), valid once, for a few minutes.
struct StreamTicket {
  std::string password;
  std::optional<node::v1::ExecRequest> exec;
  std::optional<node::v1::AttachRequest> attach;
  std::chrono::steady_clock::time_point expires;
};

class StreamTickets {
 public:
  explicit StreamTickets(std::chrono::seconds lifetime = std::chrono::seconds(300)) : lifetime_(lifetime) {}
  // Returns the token.
  std::string Issue(StreamTicket ticket, std::chrono::steady_clock::time_point now);
  // The ticket, once: a second redeem of the same token finds nothing.
  std::optional<StreamTicket> Redeem(const std::string& token, std::chrono::steady_clock::time_point now);
  std::chrono::seconds lifetime() const { return lifetime_; }

 private:
  std::chrono::seconds lifetime_;
  std::mutex mutex_;
  std::map<std::string, StreamTicket> tickets_;
};

// One exec or attach WebSocket: the first message must be the ticket's password; then client
// messages become the command's input and the node's output becomes messages (text when it is
// UTF-8, binary otherwise). A message that is exactly the xterm resize sequence
// ESC [ 8 ; <rows> ; <cols> t resizes the terminal instead. Closes with 1000 and the exit code.
class StreamBridge : public WebSocketSession, public std::enable_shared_from_this<StreamBridge> {
 public:
  StreamBridge(NodeLink& nodes, StreamTicket ticket) : nodes_(nodes), ticket_(std::move(ticket)) {}
  void OnOpen(std::shared_ptr<WebSocketConnection> connection) override;
  void OnMessage(const std::string& data, bool binary) override;
  void OnClose() override;

 private:
  void Forward(const node::v1::StreamOutput& output);
  std::string session_id() const;

  NodeLink& nodes_;
  StreamTicket ticket_;
  std::shared_ptr<WebSocketConnection> connection_;
  std::mutex mutex_;  // output arrives on the bus's thread, messages on the server's
  bool authenticated_ = false;
  bool opened_ = false;
  bool ended_ = false;
  std::string utf8_carry_;  // the start of a character split across two outputs
};

// Splits `data` (after `carry`) into the longest prefix that is whole UTF-8 and what is left
// over for next time; `valid` is false when the bytes are not UTF-8 at all.
void SplitUtf8(std::string& carry, const std::string& data, std::string* whole, bool* valid);

// "\x1b[8;<rows>;<cols>t" -> rows, cols.
std::optional<std::pair<uint32_t, uint32_t>> ParseResize(const std::string& message);

}  // namespace skiff::gateway
