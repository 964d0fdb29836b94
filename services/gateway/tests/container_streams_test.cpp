// Logs, exec and attach through the API and the WebSocket bridge, against a fake node link.
#include "skiff/gateway/container_streams.h"

#include <gtest/gtest.h>

#include "fake_group_store.h"
#include "skiff/crypto/crypto.h"
#include "skiff/gateway/group_api.h"
#include "test_support.h"

namespace skiff::gateway {
namespace {

const std::string kSub = "11111111-1111-4111-8111-111111111111";
const std::string kToken = "skf_test-token";

class FakeNodes : public NodeLink {
 public:
  std::optional<node::v1::LogsReply> ContainerLogs(const node::v1::LogsRequest& request) override {
    last_logs = request;
    return logs;
  }
  std::optional<node::v1::StreamReply> OpenExec(const node::v1::ExecRequest& request, OutputHandler on_output) override {
    exec = request;
    output = std::move(on_output);
    return reply;
  }
  std::optional<node::v1::StreamReply> OpenAttach(const node::v1::AttachRequest& request,
                                                  OutputHandler on_output) override {
    attach = request;
    output = std::move(on_output);
    return reply;
  }
  void SendInput(const std::string&, const node::v1::StreamInput& input) override { inputs.push_back(input); }
  void CloseStream(const std::string& session_id) override { closed.push_back(session_id); }

  std::optional<node::v1::LogsReply> logs;
  std::optional<node::v1::StreamReply> reply;
  node::v1::LogsRequest last_logs;
  std::optional<node::v1::ExecRequest> exec;
  std::optional<node::v1::AttachRequest> attach;
  OutputHandler output;
  std::vector<node::v1::StreamInput> inputs;
  std::vector<std::string> closed;
  std::optional<node::v1::NodeCommandReply> GroupCommand(const std::string&, const std::string&,
                                                         const node::v1::GroupCommandRequest&) override {
    return std::nullopt;
  }
};

class FakeConnection : public WebSocketConnection {
 public:
  void Send(std::string data, bool binary) override { sent.emplace_back(std::move(data), binary); }
  void Close(uint16_t code, std::string reason) override {
    close_code = code;
    close_reason = std::move(reason);
  }
  std::vector<std::pair<std::string, bool>> sent;
  std::optional<uint16_t> close_code;
  std::string close_reason;
};

class ContainerStreamsTest : public ::testing::Test {
 protected:
  ContainerStreamsTest() : box_(crypto::RandomBytes(32)) {
    store_.AddToken(crypto::HashApiToken(kToken), kSub, "");
    GroupApiOptions options;
    options.public_url = "https://skiff.test";
    api_ = std::make_unique<GroupApi>(store_, clock_, box_, options, [] { return crypto::NewUuid(); });
    api_->SetNodeLink(&nodes_);
    EXPECT_EQ(Call("PUT", Group(), ReadTestData("aci_minimal.json")).status, 201);
  }
  HttpResponse Call(const std::string& method, const std::string& path, const std::string& body = "") {
    HttpRequest request;
    request.method = method;
    request.target = path + (path.find('?') == std::string::npos ? "?" : "&") + "api-version=2023-05-01";
    request.headers["authorization"] = "Bearer " + kToken;
    request.body = body;
    return api_->Handle(request);
  }
  static std::string Group() {
    return "/subscriptions/" + kSub + "/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups/web";
  }
  static std::string Field(const std::string& json, const std::string& name) {
    auto start = json.find("\"" + name + "\":\"");
    if (start == std::string::npos) return "";
    start += name.size() + 4;
    return json.substr(start, json.find('"', start) - start);
  }
  // Runs exec, opens the socket it names and sends the password: the bridge, connected.
  std::shared_ptr<WebSocketSession> OpenExec(const std::string& body, FakeConnection** connection) {
    auto answer = Call("POST", Group() + "/containers/" + container_ + "/exec", body);
    EXPECT_EQ(answer.status, 200) << answer.body;
    const std::string uri = Field(answer.body, "webSocketUri");
    EXPECT_EQ(uri.rfind("wss://skiff.test/skiff/streams/", 0), 0u) << uri;
    HttpRequest upgrade;
    upgrade.target = uri.substr(std::string("wss://skiff.test").size());
    auto decision = api_->OpenStream(upgrade);
    EXPECT_TRUE(decision.session);
    auto conn = std::make_shared<FakeConnection>();
    *connection = conn.get();
    connections_.push_back(conn);
    decision.session->OnOpen(conn);
    decision.session->OnMessage(Field(answer.body, "password"), false);
    return decision.session;
  }

  FakeGroupStore store_;
  TestClock clock_;
  crypto::SecretBox box_;
  FakeNodes nodes_;
  std::unique_ptr<GroupApi> api_;
  std::string container_ = "hello";
  std::vector<std::shared_ptr<FakeConnection>> connections_;
};

TEST_F(ContainerStreamsTest, LogsComeFromTheNodeThatHasTheGroup) {
  auto pending = Call("GET", Group() + "/containers/hello/logs");
  EXPECT_EQ(pending.status, 409) << pending.body;  // no node has it yet
  EXPECT_NE(pending.body.find("ContainerGroupNotRunning"), std::string::npos);
  // Placed: the read model names the group's node, the only one asked.
  GroupRuntime runtime;
  runtime.group_id = store_.groups.begin()->second.group_id;
  runtime.node_id = "n1";
  store_.groups.begin()->second.runtime = runtime;
  nodes_.logs.emplace();
  nodes_.logs->set_found(true);
  nodes_.logs->set_content("line 1\nline 2\n");
  auto logs = Call("GET", Group() + "/containers/hello/logs?tail=2&timestamps=true");
  ASSERT_EQ(logs.status, 200) << logs.body;
  EXPECT_EQ(logs.body, R"({"content":"line 1\nline 2\n"})");
  EXPECT_EQ(nodes_.last_logs.tail(), 2);
  EXPECT_TRUE(nodes_.last_logs.timestamps());
  EXPECT_FALSE(nodes_.last_logs.group_id().empty());
  EXPECT_EQ(nodes_.last_logs.node_id(), "n1");
}

TEST_F(ContainerStreamsTest, BadLogAndExecRequestsAreRejected) {
  EXPECT_EQ(Call("GET", Group() + "/containers/hello/logs?tail=-1").status, 400);
  EXPECT_EQ(Call("GET", Group() + "/containers/hello/logs?tail=ten").status, 400);
  EXPECT_EQ(Call("GET", Group() + "/containers/hello/logs?timestamps=yes").status, 400);
  EXPECT_EQ(Call("GET", Group() + "/containers/nope/logs").status, 404);
  EXPECT_EQ(Call("GET", "/subscriptions/" + kSub + "/resourceGroups/rg1/providers/Microsoft.ContainerInstance/"
                        "containerGroups/missing/containers/hello/logs").status, 404);
  EXPECT_EQ(Call("POST", Group() + "/containers/hello/logs").status, 405);
  EXPECT_EQ(Call("GET", Group() + "/containers/hello/exec").status, 405);
  auto no_command = Call("POST", Group() + "/containers/hello/exec", R"({"command":"  "})");
  EXPECT_EQ(no_command.status, 400);
  EXPECT_NE(no_command.body.find("InvalidExecRequest"), std::string::npos);
  EXPECT_EQ(Call("POST", Group() + "/containers/hello/exec", R"({"command":"sh","terminalSize":{"rows":-1,"cols":80}})").status,
            400);
  EXPECT_EQ(Call("POST", Group() + "/containers/hello/exec", R"({"command":"sh","terminalSize":{"rows":24,"cols":1001}})").status,
            400);
  EXPECT_EQ(Call("POST", Group() + "/containers/hello/exec", "not json").status, 400);
  EXPECT_EQ(Call("POST", Group() + "/containers/nope/exec", R"({"command":"sh"})").status, 404);
}

TEST_F(ContainerStreamsTest, ExecOverTheSocketAfterThePassword) {
  nodes_.reply.emplace();
  nodes_.reply->set_found(true);
  nodes_.reply->set_ok(true);
  FakeConnection* conn = nullptr;
  auto session = OpenExec(R"({"command":"/bin/sh -c ls","terminalSize":{"rows":30,"cols":100}})", &conn);
  ASSERT_TRUE(nodes_.exec);
  EXPECT_EQ(nodes_.exec->command_size(), 3);  // split on white space
  EXPECT_TRUE(nodes_.exec->tty());
  EXPECT_EQ(nodes_.exec->rows(), 30u);
  session->OnMessage("ls\r", false);
  session->OnMessage("\x1b[8;40;120t", false);
  ASSERT_EQ(nodes_.inputs.size(), 2u);
  EXPECT_EQ(nodes_.inputs[0].data(), "ls\r");
  EXPECT_EQ(nodes_.inputs[1].rows(), 40u);
  EXPECT_EQ(nodes_.inputs[1].cols(), 120u);
  // "é" split across two outputs arrives whole, as text; bytes that are not UTF-8 go as binary.
  node::v1::StreamOutput out;
  out.set_data("caf\xc3");
  nodes_.output(out);
  out.set_data("\xa9\n");
  nodes_.output(out);
  out.set_data("\xff\xfe");
  nodes_.output(out);
  ASSERT_EQ(conn->sent.size(), 3u);
  EXPECT_EQ(conn->sent[0], std::make_pair(std::string("caf"), false));
  EXPECT_EQ(conn->sent[1], std::make_pair(std::string("\xc3\xa9\n"), false));
  EXPECT_TRUE(conn->sent[2].second);
  out.Clear();
  out.set_ended(true);
  out.set_exit_code(2);
  nodes_.output(out);
  EXPECT_EQ(conn->close_code, 1000);
  EXPECT_EQ(conn->close_reason, "exit code 2");
  EXPECT_EQ(nodes_.closed.size(), 1u);
}

TEST_F(ContainerStreamsTest, AWrongPasswordOrAReusedAddressIsRefused) {
  auto answer = Call("POST", Group() + "/containers/hello/exec", R"({"command":"sh"})");
  const std::string uri = Field(answer.body, "webSocketUri");
  HttpRequest upgrade;
  upgrade.target = uri.substr(std::string("wss://skiff.test").size());
  auto decision = api_->OpenStream(upgrade);
  ASSERT_TRUE(decision.session);
  auto conn = std::make_shared<FakeConnection>();
  decision.session->OnOpen(conn);
  decision.session->OnMessage("guess", false);
  EXPECT_EQ(conn->close_code, 1008);
  EXPECT_FALSE(nodes_.exec);  // nothing ran
  auto again = api_->OpenStream(upgrade);  // tickets are single-use
  EXPECT_FALSE(again.session);
  EXPECT_EQ(again.refusal.status, 404);
  upgrade.target = "/skiff/streams/made-up";
  EXPECT_FALSE(api_->OpenStream(upgrade).session);
}

TEST_F(ContainerStreamsTest, AGroupOnNoNodeClosesTheSocketWithAReason) {
  FakeConnection* conn = nullptr;
  OpenExec(R"({"command":"sh"})", &conn);
  EXPECT_EQ(conn->close_code, 1011);
  ASSERT_FALSE(conn->sent.empty());
  EXPECT_NE(conn->sent[0].first.find("not running on any node"), std::string::npos);
}

TEST_F(ContainerStreamsTest, ClosingTheSocketEndsTheNodeSession) {
  nodes_.reply.emplace();
  nodes_.reply->set_ok(true);
  FakeConnection* conn = nullptr;
  auto session = OpenExec(R"({"command":"top"})", &conn);
  EXPECT_FALSE(nodes_.exec->tty());  // no terminalSize: pipes
  session->OnClose();
  ASSERT_EQ(nodes_.inputs.size(), 1u);
  EXPECT_TRUE(nodes_.inputs[0].terminate());
}

TEST_F(ContainerStreamsTest, AttachTakesNoInput) {
  nodes_.reply.emplace();
  nodes_.reply->set_ok(true);
  auto answer = Call("POST", Group() + "/containers/hello/attach");
  ASSERT_EQ(answer.status, 200) << answer.body;
  HttpRequest upgrade;
  upgrade.target = Field(answer.body, "webSocketUri").substr(std::string("wss://skiff.test").size());
  auto decision = api_->OpenStream(upgrade);
  auto conn = std::make_shared<FakeConnection>();
  decision.session->OnOpen(conn);
  decision.session->OnMessage(Field(answer.body, "password"), false);
  ASSERT_TRUE(nodes_.attach);
  decision.session->OnMessage("typed", false);
  EXPECT_TRUE(nodes_.inputs.empty());
}

TEST(StreamTickets, ExpireAndAreUsedOnce) {
  StreamTickets tickets(std::chrono::seconds(60));
  auto t0 = std::chrono::steady_clock::now();
  std::string token = tickets.Issue({"pw", std::nullopt, std::nullopt, {}}, t0);
  EXPECT_FALSE(tickets.Redeem(token, t0 + std::chrono::seconds(61)));
  token = tickets.Issue({"pw", std::nullopt, std::nullopt, {}}, t0);
  EXPECT_TRUE(tickets.Redeem(token, t0 + std::chrono::seconds(59)));
  EXPECT_FALSE(tickets.Redeem(token, t0 + std::chrono::seconds(59)));
}

TEST(ParseResize, OnlyTheExactSequence) {
  EXPECT_EQ(ParseResize("\x1b[8;24;80t"), std::make_pair(24u, 80u));
  EXPECT_FALSE(ParseResize("\x1b[8;24;80tx"));
  EXPECT_FALSE(ParseResize("\x1b[8;0;80t"));
  EXPECT_FALSE(ParseResize("\x1b[8;24;99999t"));
  EXPECT_FALSE(ParseResize("ls\n"));
}

}  // namespace
}  // namespace skiff::gateway
