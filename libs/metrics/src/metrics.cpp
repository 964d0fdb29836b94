#include "skiff/metrics/metrics.h"

#include <cmath>
#include <cstdio>

namespace skiff::metrics {

namespace {

void AtomicAdd(std::atomic<double>& target, double amount) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + amount, std::memory_order_relaxed)) {
  }
}

std::string Number(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (std::isnan(value)) return "NaN";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
}

std::string Escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string WithLabel(const std::string& labels, const std::string& extra) {
  return "{" + labels + (labels.empty() ? "" : ",") + extra + "}";
}

}  // namespace

std::string RenderLabels(const Labels& labels) {
  std::string out;
  for (const auto& [key, value] : labels) {
    if (!out.empty()) out += ',';
    out += key + "=\"" + Escape(value) + "\"";
  }
  return out;
}

void Counter::Add(double amount) { AtomicAdd(value_, amount); }
void Gauge::Add(double amount) { AtomicAdd(value_, amount); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, value);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  snapshot.bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative.push_back(running);
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

Registry::Family& Registry::FamilyOf(const std::string& name, const std::string& help, const std::string& type) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.help = help;
    it->second.type = type;
  }
  return it->second;
}

Counter& Registry::GetCounter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  auto& slot = FamilyOf(name, help, "counter").counters[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& Registry::GetGauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  auto& slot = FamilyOf(name, help, "gauge").gauges[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& Registry::GetHistogram(const std::string& name, const std::string& help, const Labels& labels,
                                  std::vector<double> bounds) {
  std::lock_guard lock(mutex_);
  auto& slot = FamilyOf(name, help, "histogram").histograms[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<Histogram>(std::move(bounds));
  return *slot;
}

void Registry::AddCollector(std::function<void(std::vector<Sample>&)> collect) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collect));
}

std::string Registry::Render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, family] : families_) {
    out += "# HELP " + name + " " + family.help + "\n# TYPE " + name + " " + family.type + "\n";
    for (const auto& [labels, counter] : family.counters) {
      out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + Number(counter->Value()) + "\n";
    }
    for (const auto& [labels, gauge] : family.gauges) {
      out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + Number(gauge->Value()) + "\n";
    }
    for (const auto& [labels, histogram] : family.histograms) {
      auto snapshot = histogram->Read();
      for (size_t i = 0; i <= snapshot.bounds.size(); ++i) {
        const std::string le = i < snapshot.bounds.size() ? Number(snapshot.bounds[i]) : "+Inf";
        out += name + "_bucket" + WithLabel(labels, "le=\"" + le + "\"") + " " + std::to_string(snapshot.cumulative[i]) + "\n";
      }
      const std::string suffix = labels.empty() ? "" : "{" + labels + "}";
      out += name + "_sum" + suffix + " " + Number(snapshot.sum) + "\n";
      out += name + "_count" + suffix + " " + std::to_string(snapshot.count) + "\n";
    }
  }
  std::vector<Sample> samples;
  for (const auto& collect : collectors_) collect(samples);
  std::string last;
  for (const auto& sample : samples) {
    if (sample.name != last) {
      out += "# HELP " + sample.name + " " + sample.help + "\n# TYPE " + sample.name + " " + sample.type + "\n";
      last = sample.name;
    }
    const std::string labels = RenderLabels(sample.labels);
    out += sample.name + (labels.empty() ? "" : "{" + labels + "}") + " " + Number(sample.value) + "\n";
  }
  return out;
}

Registry& DefaultRegistry() {
  static Registry registry;
  return registry;
}

}  // namespace skiff::metrics
