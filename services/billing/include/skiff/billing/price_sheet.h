#pragma once

// Prices and the arithmetic of charges: splitting a billed interval at hour boundaries (the
// rollup) and at price changes (each second costs what was in force during it).
#include <string>
#include <vector>

#include "skiff/billing/meter.h"

namespace skiff::billing {

struct Rates {
  double vcpu_second = 0;
  double gb_second = 0;
  double gpu_second = 0;
};

struct PriceVersion {
  Millis effective_from = 0;
  Rates regular;
  Rates spot;
};

struct Charge {
  double seconds = 0;
  double vcpu_seconds = 0;
  double gb_seconds = 0;
  double gpu_seconds = 0;
  double cost = 0;
  Charge& operator+=(const Charge& other);
};

class PriceSheet {
 public:
  // Versions in any order; the earliest applies to all time before it too.
  PriceSheet(std::string currency, std::vector<PriceVersion> versions);
  // Reads "<ISO-8601 time> <Regular|Spot> <per vCPU-s> <per GB-s> <per GPU-s>" lines ('#' comments);
  // a Regular and a Spot line may share a time. Throws std::runtime_error naming the bad line.
  static PriceSheet Parse(const std::string& currency, const std::string& text);

  const std::string& currency() const { return currency_; }
  // The charge for `resources` over [from, to), price changes inside it included.
  Charge ChargeFor(const Resources& resources, Millis from, Millis to) const;
  const std::vector<PriceVersion>& versions() const { return versions_; }

 private:
  std::string currency_;
  std::vector<PriceVersion> versions_;  // by effective_from
};

// One row of the hourly rollup: a group's usage inside one clock hour (UTC).
struct HourlyUsage {
  std::string subscription_id;
  std::string resource_group;
  std::string group_id;
  std::string name;
  Millis hour = 0;  // start of the hour
  bool spot = false;
  Charge charge;
};

std::vector<HourlyUsage> Rollup(const Interval& interval, const PriceSheet& prices);

}  // namespace skiff::billing
