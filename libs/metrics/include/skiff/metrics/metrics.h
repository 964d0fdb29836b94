#pragma once

// Prometheus metrics: a registry of counters, gauges and histograms rendered in the text
// exposition format (version 0.0.4), and a tiny HTTP listener that serves them on /metrics
// (and /healthz for health checks). Updating a metric is lock-free; rendering takes a lock.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace skiff::metrics {

class Counter {
 public:
  void Add(double amount = 1);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double amount);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Read() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bound, then +Inf
  std::atomic<double> sum_{0};
};

// Seconds from 1 ms to 10 s: request and pass latencies.
std::vector<double> LatencyBuckets();

// Labels as Prometheus writes them: {{"method","GET"},{"code","200"}} -> method="GET",code="200".
using Labels = std::vector<std::pair<std::string, std::string>>;

class Registry {
 public:
  // The same name and labels return the same metric; the first call's help text is kept.
  Counter& GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& GetGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help, const Labels& labels = {},
                          std::vector<double> bounds = LatencyBuckets());
  // Metrics computed when scraped (per-container usage, queue depths): `collect` appends
  // samples, written after the registered families.
  struct Sample {
    std::string name;
    std::string help;
    std::string type;  // gauge | counter
    Labels labels;
    double value = 0;
  };
  void AddCollector(std::function<void(std::vector<Sample>&)> collect);

  std::string Render() const;

 private:
  struct Family {
    std::string help;
    std::string type;
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  Family& FamilyOf(const std::string& name, const std::string& help, const std::string& type);
  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
  std::vector<std::function<void(std::vector<Sample>&)>> collectors_;
};

// The process-wide registry each service fills.
Registry& DefaultRegistry();

// Serves GET /metrics and GET /healthz on `listen` ("host:port"; port 0 picks one) on its own
// thread. An empty `listen` serves nothing. A port already taken (two services of a kind on one
// host) is not fatal: error() says why nothing is served. A malformed `listen` throws.
class MetricsServer {
 public:
  MetricsServer(const std::string& listen, Registry& registry = DefaultRegistry());
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  // The bound port (0 when not serving).
  int port() const;
  const std::string& error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string RenderLabels(const Labels& labels);

}  // namespace skiff::metrics
