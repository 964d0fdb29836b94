#include "skiff/gateway/usage_sources.h"

namespace skiff::gateway {

void ContainerUsageHistory::Record(const node::v1::NodeUsage& usage) {
  const int64_t at = usage.sent_at().seconds() * 1000 + usage.sent_at().nanos() / 1'000'000;
  std::lock_guard lock(mutex_);
  for (const auto& container : usage.containers()) {
    auto& samples = by_group_[container.group().group_id()][container.container()];
    if (!samples.empty() && samples.back().at_ms >= at) continue;  // a repeat or out of order
    samples.push_back({at, container.cpu_seconds(), container.memory_bytes()});
    while (!samples.empty() && samples.front().at_ms < at - keep_.count()) samples.pop_front();
  }
  // Groups that stopped reporting long ago are forgotten.
  for (auto group = by_group_.begin(); group != by_group_.end();) {
    for (auto c = group->second.begin(); c != group->second.end();) {
      c = c->second.empty() || c->second.back().at_ms < at - keep_.count() ? group->second.erase(c) : std::next(c);
    }
    group = group->second.empty() ? by_group_.erase(group) : std::next(group);
  }
}

std::map<std::string, std::vector<ContainerUsageHistory::Sample>> ContainerUsageHistory::Samples(
    const std::string& group_id, int64_t from_ms, int64_t to_ms) const {
  std::map<std::string, std::vector<Sample>> out;
  std::lock_guard lock(mutex_);
  auto group = by_group_.find(group_id);
  if (group == by_group_.end()) return out;
  for (const auto& [container, samples] : group->second) {
    auto& list = out[container];
    for (const auto& sample : samples) {
      if (sample.at_ms >= from_ms && sample.at_ms <= to_ms) list.push_back(sample);
    }
  }
  return out;
}

}  // namespace skiff::gateway
