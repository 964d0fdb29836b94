// libFuzzer: the exec/attach WebSocket bridge driven by a hostile client and a hostile node.
// The input is a script: each step's first byte says who speaks (client message, binary or
// text; node output; node end), the next two bytes its length, then its bytes. The first client
// message is compared with the ticket's password as the real bridge does.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "skiff/gateway/container_streams.h"

using namespace skiff::gateway;
namespace nv1 = skiff::node::v1;

namespace {

class SilentConnection : public WebSocketConnection {
 public:
  void Send(std::string data, bool) override { sent += data.size(); }
  void Close(uint16_t, std::string) override { closed = true; }
  size_t sent = 0;
  bool closed = false;
};

class ScriptedNodes : public NodeLink {
 public:
  std::optional<nv1::LogsReply> ContainerLogs(const nv1::LogsRequest&) override { return std::nullopt; }
  std::optional<nv1::StreamReply> OpenExec(const nv1::ExecRequest&, OutputHandler on_output) override {
    output = std::move(on_output);
    nv1::StreamReply reply;
    reply.set_found(true);
    reply.set_ok(true);
    return reply;
  }
  std::optional<nv1::StreamReply> OpenAttach(const nv1::AttachRequest&, OutputHandler on_output) override {
    output = std::move(on_output);
    nv1::StreamReply reply;
    reply.set_found(true);
    reply.set_ok(true);
    return reply;
  }
  void SendInput(const std::string&, const nv1::StreamInput& input) override { inputs += input.data().size(); }
  void CloseStream(const std::string&) override { output = nullptr; }
  std::optional<nv1::NodeCommandReply> GroupCommand(const std::string&, const std::string&,
                                                    const nv1::GroupCommandRequest&) override {
    return std::nullopt;
  }
  OutputHandler output;
  size_t inputs = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ScriptedNodes nodes;
  StreamTicket ticket;
  ticket.password = "pw";
  nv1::ExecRequest exec;
  exec.set_group_id("g");
  exec.set_container("c");
  exec.set_tty(size > 0 && (data[0] & 1));
  ticket.exec = exec;
  auto bridge = std::make_shared<StreamBridge>(nodes, ticket);
  auto connection = std::make_shared<SilentConnection>();
  bridge->OnOpen(connection);
  size_t at = 1;
  uint64_t seq = 0;
  while (at + 3 <= size) {
    const uint8_t who = data[at];
    const size_t length = std::min<size_t>((size_t{data[at + 1]} << 8) | data[at + 2], size - at - 3);
    const std::string bytes(reinterpret_cast<const char*>(data) + at + 3, length);
    at += 3 + length;
    switch (who % 4) {
      case 0:
      case 1:
        bridge->OnMessage(bytes, who % 4 == 1);
        break;
      case 2:
        if (nodes.output) {
          nv1::StreamOutput output;
          output.set_seq(++seq);
          output.set_data(bytes);
          nodes.output(output);
        }
        break;
      default:
        if (nodes.output) {
          nv1::StreamOutput output;
          output.set_seq(++seq);
          output.set_ended(true);
          output.set_exit_code(static_cast<int32_t>(length));
          nodes.output(output);
        }
    }
    std::string carry = bytes.substr(0, length / 2), whole;
    bool valid = false;
    SplitUtf8(carry, bytes, &whole, &valid);
    (void)ParseResize(bytes);
  }
  bridge->OnClose();
  return 0;
}
