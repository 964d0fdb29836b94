#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "skiff/metrics/metrics.h"

namespace skiff::metrics {
namespace {

TEST(MetricsTest, RendersTheTextFormat) {
  Registry registry;
  registry.GetCounter("skiff_requests_total", "Requests answered.", {{"method", "GET"}, {"code", "200"}}).Add(3);
  registry.GetCounter("skiff_requests_total", "ignored", {{"method", "GET"}, {"code", "200"}}).Add();
  registry.GetGauge("skiff_open_groups", "Groups being billed.").Set(7);
  auto& latency = registry.GetHistogram("skiff_pass_seconds", "Pass time.", {}, {0.1, 1});
  latency.Observe(0.05);
  latency.Observe(0.5);
  latency.Observe(3);
  registry.AddCollector([](std::vector<Registry::Sample>& out) {
    out.push_back({"skiff_container_memory_bytes", "Memory in use.", "gauge", {{"container", "we\"b"}}, 1024});
  });
  const std::string text = registry.Render();
  EXPECT_NE(text.find("# TYPE skiff_requests_total counter\nskiff_requests_total{method=\"GET\",code=\"200\"} 4\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# HELP skiff_requests_total Requests answered.\n"), std::string::npos);
  EXPECT_NE(text.find("skiff_open_groups 7\n"), std::string::npos);
  EXPECT_NE(text.find("skiff_pass_seconds_bucket{le=\"0.10000000000000001\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("skiff_pass_seconds_bucket{le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("skiff_pass_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("skiff_pass_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(text.find("skiff_container_memory_bytes{container=\"we\\\"b\"} 1024\n"), std::string::npos) << text;
}

std::string Get(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return "";
  }
  ::send(fd, request.data(), request.size(), 0);
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) response.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  return response;
}

TEST(MetricsServerTest, ServesMetricsAndHealth) {
  Registry registry;
  registry.GetCounter("skiff_test_total", "A test counter.").Add(2);
  MetricsServer server("127.0.0.1:0", registry);
  ASSERT_GT(server.port(), 0);
  auto metrics = Get(server.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(metrics.rfind("HTTP/1.1 200 OK", 0), 0u) << metrics;
  EXPECT_NE(metrics.find("skiff_test_total 2"), std::string::npos);
  EXPECT_NE(Get(server.port(), "GET /healthz HTTP/1.1\r\n\r\n").find("200 OK"), std::string::npos);
  EXPECT_NE(Get(server.port(), "GET /nope HTTP/1.1\r\n\r\n").find("404"), std::string::npos);
  EXPECT_NE(Get(server.port(), "POST /metrics HTTP/1.1\r\n\r\n").find("405"), std::string::npos);
}

TEST(MetricsServerTest, EmptyListenServesNothing) {
  MetricsServer server("");
  EXPECT_EQ(server.port(), 0);
  EXPECT_THROW(MetricsServer("no-port"), std::runtime_error);
  MetricsServer first("127.0.0.1:0");
  MetricsServer second("127.0.0.1:" + std::to_string(first.port()));
  EXPECT_EQ(second.port(), 0);
  EXPECT_NE(second.error().find("cannot listen"), std::string::npos);
}

}  // namespace
}  // namespace skiff::metrics
