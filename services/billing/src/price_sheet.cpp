#include "skiff/billing/price_sheet.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "skiff/timefmt/rfc3339.h"

namespace skiff::billing {

Charge& Charge::operator+=(const Charge& other) {
  seconds += other.seconds;
  vcpu_seconds += other.vcpu_seconds;
  gb_seconds += other.gb_seconds;
  gpu_seconds += other.gpu_seconds;
  cost += other.cost;
  return *this;
}

PriceSheet::PriceSheet(std::string currency, std::vector<PriceVersion> versions)
    : currency_(std::move(currency)), versions_(std::move(versions)) {
  if (versions_.empty()) versions_.push_back({});
  std::sort(versions_.begin(), versions_.end(),
            [](const PriceVersion& a, const PriceVersion& b) { return a.effective_from < b.effective_from; });
}

PriceSheet PriceSheet::Parse(const std::string& currency, const std::string& text) {
  std::vector<PriceVersion> versions;
  std::istringstream lines(text);
  std::string line;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::string when, priority;
    Rates rates;
    if (!(fields >> when)) continue;
    if (!(fields >> priority >> rates.vcpu_second >> rates.gb_second >> rates.gpu_second) ||
        (priority != "Regular" && priority != "Spot")) {
      throw std::runtime_error("price sheet line " + std::to_string(number) +
                               ": expected '<time> <Regular|Spot> <vcpu/s> <gb/s> <gpu/s>'");
    }
    auto parsed = timefmt::ParseTime(when);
    if (!parsed) throw std::runtime_error("price sheet line " + std::to_string(number) + ": bad time '" + when + "'");
    const Millis effective = std::chrono::duration_cast<std::chrono::milliseconds>(parsed->time_since_epoch()).count();
    auto it = std::find_if(versions.begin(), versions.end(),
                           [&](const PriceVersion& v) { return v.effective_from == effective; });
    if (it == versions.end()) {
      // A new version starts from the previous one's rates, so a line may change only one tier.
      PriceVersion version = versions.empty() ? PriceVersion{} : versions.back();
      version.effective_from = effective;
      versions.push_back(version);
      it = versions.end() - 1;
    }
    (priority == "Spot" ? it->spot : it->regular) = rates;
  }
  if (versions.empty()) throw std::runtime_error("price sheet has no prices");
  return PriceSheet(currency, std::move(versions));
}

Charge PriceSheet::ChargeFor(const Resources& resources, Millis from, Millis to) const {
  Charge charge;
  if (to <= from) return charge;
  for (size_t i = 0; i < versions_.size(); ++i) {
    const Millis begin = i == 0 ? from : std::max(from, versions_[i].effective_from);
    const Millis end = i + 1 < versions_.size() ? std::min(to, versions_[i + 1].effective_from) : to;
    if (end <= begin) continue;
    const double seconds = static_cast<double>(end - begin) / 1000.0;
    const Rates& rates = resources.spot ? versions_[i].spot : versions_[i].regular;
    Charge part;
    part.seconds = seconds;
    part.vcpu_seconds = seconds * resources.vcpu;
    part.gb_seconds = seconds * resources.memory_gb;
    part.gpu_seconds = seconds * resources.gpu;
    part.cost = part.vcpu_seconds * rates.vcpu_second + part.gb_seconds * rates.gb_second +
                part.gpu_seconds * rates.gpu_second;
    charge += part;
  }
  return charge;
}

std::vector<HourlyUsage> Rollup(const Interval& interval, const PriceSheet& prices) {
  constexpr Millis kHour = 3'600'000;
  std::vector<HourlyUsage> rows;
  for (Millis hour = interval.start - ((interval.start % kHour) + kHour) % kHour; hour < interval.end; hour += kHour) {
    const Millis from = std::max(hour, interval.start);
    const Millis to = std::min(hour + kHour, interval.end);
    if (to <= from) continue;
    HourlyUsage row;
    row.subscription_id = interval.subscription_id;
    row.resource_group = interval.resource_group;
    row.group_id = interval.group_id;
    row.name = interval.name;
    row.hour = hour;
    row.spot = interval.resources.spot;
    row.charge = prices.ChargeFor(interval.resources, from, to);
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace skiff::billing
