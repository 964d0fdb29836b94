#pragma once

// Ports for the gateway's usage views: costs come from the billing service, container cpu and
// memory samples from the nodes' periodic usage reports.
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "skiff/billing/v1/billing.pb.h"
#include "skiff/node/v1/node.pb.h"

namespace skiff::gateway {

class BillingLink {
 public:
  virtual ~BillingLink() = default;
  // nullopt: billing did not answer in time.
  virtual std::optional<billing::v1::CostReply> Costs(const billing::v1::CostRequest& request) = 0;
};

// Recent cpu and memory samples per container, kept in memory for `keep` (the nodes send one
// report every few seconds; the metrics API reads back at most an hour or so).
class ContainerUsageHistory {
 public:
  struct Sample {
    int64_t at_ms = 0;
    double cpu_seconds = 0;   // cumulative
    double memory_bytes = 0;
  };
  explicit ContainerUsageHistory(std::chrono::milliseconds keep = std::chrono::hours(2)) : keep_(keep) {}
  void Record(const node::v1::NodeUsage& usage);
  // Per container of the group, samples in [from_ms, to_ms], oldest first.
  std::map<std::string, std::vector<Sample>> Samples(const std::string& group_id, int64_t from_ms, int64_t to_ms) const;

 private:
  std::chrono::milliseconds keep_;
  mutable std::mutex mutex_;
  std::map<std::string, std::map<std::string, std::deque<Sample>>> by_group_;  // group -> container -> samples
};

}  // namespace skiff::gateway
