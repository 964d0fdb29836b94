// Usages against quota, the cost view (through a fake billing link) and container metrics.
#include <gtest/gtest.h>

#include <google/protobuf/util/time_util.h>

#include "fake_group_store.h"
#include "skiff/crypto/crypto.h"
#include "skiff/gateway/group_api.h"
#include "test_support.h"

namespace skiff::gateway {
namespace {

const std::string kSub = "33333333-3333-4333-8333-333333333333";
const std::string kToken = "skf_usage-token";

class FakeBilling : public BillingLink {
 public:
  std::optional<billing::v1::CostReply> Costs(const billing::v1::CostRequest& request) override {
    last = request;
    return reply;
  }
  billing::v1::CostRequest last;
  std::optional<billing::v1::CostReply> reply;
};

class UsageApiTest : public ::testing::Test {
 protected:
  UsageApiTest() : box_(crypto::RandomBytes(32)) {
    store_.AddToken(crypto::HashApiToken(kToken), kSub, "");
    GroupApiOptions options;
    options.quotas.groups = 10;
    options.quotas.cores = 0;  // no limit
    api_ = std::make_unique<GroupApi>(store_, clock_, box_, options, SequentialIds(&next_id_));
    api_->SetBillingLink(&billing_);
    api_->SetUsageHistory(&history_);
  }
  HttpResponse Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return api_->Handle(AuthorizedRequest(kToken, method, path, body));
  }
  std::string GroupPath(const std::string& name) {
    return "/subscriptions/" + kSub + "/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/" + name;
  }
  void Create(const std::string& name, double cpu) {
    auto r = Call("PUT", GroupPath(name) + "?api-version=2023-05-01",
                  R"({"location":"local","properties":{"osType":"Linux","containers":[{"name":"web","properties":{)"
                  R"("image":"127.0.0.1:5000/skiff/hello:1","resources":{"requests":{"cpu":)" +
                      std::to_string(cpu) + R"(,"memoryInGB":0.5}}}}]}})");
    ASSERT_EQ(r.status, 201) << r.body;
  }

  FakeGroupStore store_;
  TestClock clock_;
  crypto::SecretBox box_;
  int next_id_ = 0;
  FakeBilling billing_;
  ContainerUsageHistory history_;
  std::unique_ptr<GroupApi> api_;
};

TEST_F(UsageApiTest, UsagesShowGroupsAndCoresAgainstQuota) {
  Create("a", 1);
  Create("b", 0.5);
  auto r = Call("GET", "/subscriptions/" + kSub + "/providers/Microsoft.ContainerInstance/locations/local/usages?api-version=2023-05-01");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("name":{"value":"ContainerGroups","localizedValue":"Container Groups"},"currentValue":2,"limit":10})"),
            std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"({"value":"StandardCores","localizedValue":"Standard Cores"},"currentValue":1.5,"limit":-1})"), std::string::npos) << r.body;
  auto unknown = Call("GET", "/subscriptions/" + kSub + "/providers/Microsoft.ContainerInstance/locations/mars/usages?api-version=2023-05-01");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(ErrorCode(unknown), "LocationNotAvailableForResourceType");
}

TEST_F(UsageApiTest, CostsPassTheScopeAndRenderJsonAndCsv) {
  billing::v1::CostReply reply;
  reply.set_ok(true);
  reply.set_currency("USD");
  auto* line = reply.add_lines();
  line->set_subscription_id(kSub);
  line->set_resource_group("rg");
  line->set_group_name("a,b");
  line->set_group_id("g-1");
  line->set_seconds(60);
  line->set_vcpu_seconds(60);
  line->set_cost(0.00081);
  line->set_start_event_id("e1");
  reply.set_total_cost(0.00081);
  billing_.reply = reply;

  auto json = Call("GET", GroupPath("web") + "/providers/Skiff.Billing/costs?api-version=2023-05-01&from=2026-01-01T00:00:00Z&groupBy=interval");
  ASSERT_EQ(json.status, 200) << json.body;
  EXPECT_EQ(billing_.last.subscription_id(), kSub);
  EXPECT_EQ(billing_.last.resource_group(), "rg");
  EXPECT_EQ(billing_.last.group_name(), "web");
  EXPECT_EQ(billing_.last.group_by(), "interval");
  EXPECT_EQ(google::protobuf::util::TimeUtil::ToString(billing_.last.from()), "2026-01-01T00:00:00Z");
  EXPECT_FALSE(billing_.last.has_to());
  EXPECT_NE(json.body.find(R"("totalCost":0.00081)"), std::string::npos) << json.body;
  EXPECT_NE(json.body.find(R"("gpuSeconds":0)"), std::string::npos) << json.body;  // zeros are written

  auto csv = Call("GET", "/subscriptions/" + kSub + "/providers/Skiff.Billing/costs?api-version=2023-05-01&format=csv");
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.Header("Content-Type"), "text/csv; charset=utf-8");
  EXPECT_EQ(billing_.last.resource_group(), "");
  EXPECT_NE(csv.body.find("\"a,b\",g-1,,,,60.000,60.000,0.000,0.000,0.000810000,USD,e1,,false\n"), std::string::npos) << csv.body;
}

TEST_F(UsageApiTest, CostErrorsAreClear) {
  const std::string base = "/subscriptions/" + kSub + "/providers/Skiff.Billing/costs?api-version=2023-05-01";
  auto bad_time = Call("GET", base + "&from=yesterday");
  EXPECT_EQ(bad_time.status, 400);
  EXPECT_EQ(ErrorCode(bad_time), "InvalidQueryParameter");
  EXPECT_EQ(Call("GET", base + "&format=xml").status, 400);
  auto down = Call("GET", base);  // billing_.reply is empty: nobody answered
  EXPECT_EQ(down.status, 503);
  billing::v1::CostReply refused;
  refused.set_error_code("InvalidGroupBy");
  refused.set_error_message("groupBy 'x' is not one of: group, resourceGroup, subscription, interval.");
  billing_.reply = refused;
  auto invalid = Call("GET", base + "&groupBy=x");
  EXPECT_EQ(invalid.status, 400);
  EXPECT_NE(invalid.body.find("groupBy 'x'"), std::string::npos);
  EXPECT_EQ(Call("POST", base).status, 405);
}

node::v1::NodeUsage Report(const std::string& group_id, int64_t at_ms, double cpu_seconds, double memory) {
  node::v1::NodeUsage usage;
  *usage.mutable_sent_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(at_ms);
  auto* c = usage.add_containers();
  c->mutable_group()->set_group_id(group_id);
  c->set_container("web");
  c->set_cpu_seconds(cpu_seconds);
  c->set_memory_bytes(memory);
  return usage;
}

TEST_F(UsageApiTest, MetricsGiveMillicoresAndBytesPerInterval) {
  Create("web", 1);
  const std::string group_id = store_.Find({kSub, "rg", "web"})->group_id;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now.time_since_epoch()).count();
  const int64_t minute = now - now % 60'000 - 60'000;  // the last whole minute
  history_.Record(Report(group_id, minute + 0, 10.0, 100));
  history_.Record(Report(group_id, minute + 10'000, 12.5, 300));  // 2.5 cpu-seconds in 10 s: 250 millicores
  history_.Record(Report(group_id, minute + 20'000, 15.0, 200));
  auto r = Call("GET", GroupPath("web") + "/providers/microsoft.Insights/metrics?api-version=2018-01-01&timespan=PT10M&interval=PT1M");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("name":{"value":"CpuUsage","localizedValue":"CPU Usage"})"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("average":250)"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("average":200)"), std::string::npos) << r.body;  // memory: (100+300+200)/3
  EXPECT_NE(r.body.find(R"("value":"web")"), std::string::npos);
  auto maximum = Call("GET", GroupPath("web") + "/providers/microsoft.Insights/metrics?api-version=2018-01-01&metricnames=MemoryUsage&aggregation=Maximum&timespan=PT10M");
  EXPECT_NE(maximum.body.find(R"("maximum":300)"), std::string::npos) << maximum.body;
  EXPECT_EQ(maximum.body.find("CpuUsage"), std::string::npos);

  EXPECT_EQ(ErrorCode(Call("GET", GroupPath("web") + "/providers/microsoft.Insights/metrics?api-version=2018-01-01&metricnames=Disk")), "InvalidQueryParameter");
  EXPECT_EQ(Call("GET", GroupPath("web") + "/providers/microsoft.Insights/metrics?api-version=2018-01-01&interval=PT1S").status, 400);
  EXPECT_EQ(Call("GET", GroupPath("web") + "/providers/microsoft.Insights/metrics?api-version=2018-01-01&timespan=PT30D&interval=PT1M").status, 400);
  EXPECT_EQ(Call("GET", GroupPath("nope") + "/providers/microsoft.Insights/metrics?api-version=2018-01-01").status, 404);
  EXPECT_EQ(Call("GET", GroupPath("web") + "/providers/microsoft.Insights/metrics?api-version=1999-01-01").status, 400);
}

}  // namespace
}  // namespace skiff::gateway

namespace skiff::gateway {
namespace {

// Stop, start and restart go to the node the read model last saw the group on.
class RecordingNodes : public NodeLink {
 public:
  std::optional<node::v1::LogsReply> ContainerLogs(const node::v1::LogsRequest&) override { return std::nullopt; }
  std::optional<node::v1::StreamReply> OpenExec(const node::v1::ExecRequest&, OutputHandler) override { return std::nullopt; }
  std::optional<node::v1::StreamReply> OpenAttach(const node::v1::AttachRequest&, OutputHandler) override {
    return std::nullopt;
  }
  void SendInput(const std::string&, const node::v1::StreamInput&) override {}
  void CloseStream(const std::string&) override {}
  std::optional<node::v1::NodeCommandReply> GroupCommand(const std::string& node_id, const std::string& verb,
                                                         const node::v1::GroupCommandRequest& request) override {
    calls.push_back(node_id + " " + verb + " " + std::to_string(request.placement_generation()));
    return reply;
  }
  std::vector<std::string> calls;
  std::optional<node::v1::NodeCommandReply> reply;
};

TEST_F(UsageApiTest, GroupCommandsGoToTheGroupsNode) {
  RecordingNodes nodes;
  api_->SetNodeLink(&nodes);
  Create("web", 1);
  const std::string stop = GroupPath("web") + "/stop?api-version=2023-05-01";
  auto not_placed = Call("POST", stop);
  EXPECT_EQ(not_placed.status, 409);
  EXPECT_EQ(ErrorCode(not_placed), "ContainerGroupNotRunning");
  EXPECT_EQ(Call("POST", GroupPath("nope") + "/stop?api-version=2023-05-01").status, 404);
  EXPECT_EQ(Call("GET", stop).status, 405);

  for (auto& [key, record] : store_.groups) {
    GroupRuntime runtime;
    runtime.node_id = "node-7";
    runtime.placement_generation = 3;
    record.runtime = runtime;
  }
  EXPECT_EQ(Call("POST", stop).status, 503);  // the node did not answer
  nodes.reply = node::v1::NodeCommandReply();
  nodes.reply->set_ok(true);
  EXPECT_EQ(Call("POST", stop).status, 204);
  EXPECT_EQ(Call("POST", GroupPath("web") + "/START?api-version=2023-05-01").status, 204);
  EXPECT_EQ(Call("POST", GroupPath("web") + "/restart?api-version=2023-05-01").status, 204);
  ASSERT_EQ(nodes.calls.size(), 4u);
  EXPECT_EQ(nodes.calls[1], "node-7 stop 3");
  EXPECT_EQ(nodes.calls[2], "node-7 start 3");
  EXPECT_EQ(nodes.calls[3], "node-7 restart 3");
  nodes.reply->set_ok(false);
  nodes.reply->set_error_message("the group is not on this node");
  auto refused = Call("POST", stop);
  EXPECT_EQ(refused.status, 409);
  EXPECT_NE(refused.body.find("the group is not on this node"), std::string::npos);
}

}  // namespace
}  // namespace skiff::gateway
