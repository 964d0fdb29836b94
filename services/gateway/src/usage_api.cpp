// The usage views of the API: ACI's usages (current use against quota), Skiff's cost view
// (from the billing service) and ACI's container metrics (CpuUsage, MemoryUsage).
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <boost/algorithm/string/predicate.hpp>
#include <cstdio>

#include "skiff/containerinstance/v1/usage.pb.h"
#include "skiff/gateway/group_api.h"
#include "skiff/gateway/usage_sources.h"

namespace skiff::gateway {

namespace ci = containerinstance::v1;
using google::protobuf::util::TimeUtil;

namespace {

HttpResponse Body(int status, std::string body, const std::string& type) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  response.headers.emplace_back("Content-Type", type);
  return response;
}

// Every field written, zeros included: a cost of 0 is an answer, not a missing value.
std::string FullJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

int64_t ToMillis(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// ISO 8601 durations as Azure Monitor takes them: PT<n>M, PT<n>H, P<n>D. nullopt otherwise.
std::optional<int64_t> ParseDurationMillis(const std::string& text) {
  unsigned long amount = 0;
  char unit = 0;
  int used = 0;
  if (std::sscanf(text.c_str(), "PT%lu%c%n", &amount, &unit, &used) == 2 && used == static_cast<int>(text.size())) {
    if (unit == 'M') return static_cast<int64_t>(amount) * 60'000;
    if (unit == 'H') return static_cast<int64_t>(amount) * 3'600'000;
    if (unit == 'S') return static_cast<int64_t>(amount) * 1'000;
  }
  if (std::sscanf(text.c_str(), "P%lu%c%n", &amount, &unit, &used) == 2 && used == static_cast<int>(text.size()) &&
      unit == 'D') {
    return static_cast<int64_t>(amount) * 86'400'000;
  }
  return std::nullopt;
}

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string Iso(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "";
  return FormatTime(std::chrono::system_clock::time_point(std::chrono::milliseconds(TimeUtil::TimestampToMilliseconds(t))));
}

ApiError BadQuery(const std::string& message) { return {ErrorKind::kInvalidQueryParameter, message, ""}; }

}  // namespace

HttpResponse GroupApi::ListUsages(const Route& route) {
  bool known_location = false;
  for (const auto& location : options_.limits.locations) known_location |= boost::iequals(location, route.location);
  if (!known_location) {
    return ErrorResponse({ErrorKind::kInvalidLocation, "The location '" + route.location + "' is not available.", ""});
  }
  const SubscriptionUsage usage = store_.Usage(route.subscription_id, ToMillis(clock_.Now()), 1);
  ci::UsageListResult result;
  auto add = [&](const std::string& name, const std::string& localized, double current, double limit) {
    auto* item = result.add_value();
    item->set_id("/subscriptions/" + route.subscription_id + "/providers/Microsoft.ContainerInstance/locations/" +
                 route.location + "/usages/" + name);
    item->set_unit("Count");
    item->set_current_value(current);
    item->set_limit(limit > 0 ? limit : -1);  // -1: no limit configured
    item->mutable_name()->set_value(name);
    item->mutable_name()->set_localized_value(localized);
  };
  add("ContainerGroups", "Container Groups", static_cast<double>(usage.groups),
      static_cast<double>(options_.quotas.groups));
  add("StandardCores", "Standard Cores", usage.cores, options_.quotas.cores);
  return Body(200, FullJson(result), "application/json; charset=utf-8");
}

HttpResponse GroupApi::Costs(const Route& route) {
  billing::v1::CostRequest request;
  request.set_subscription_id(route.subscription_id);
  request.set_resource_group(route.resource_group);
  request.set_group_name(route.name);
  for (const auto& [key, field] : {std::pair<std::string, google::protobuf::Timestamp*>{"from", request.mutable_from()},
                                   {"to", request.mutable_to()}}) {
    const std::string text = route.Query(key);
    if (text.empty()) continue;
    auto time = ParseTime(text);
    if (!time) return ErrorResponse(BadQuery("'" + key + "' must be an RFC 3339 UTC time such as 2026-01-01T00:00:00Z."));
    *field = TimeUtil::MillisecondsToTimestamp(ToMillis(*time));
  }
  if (route.Query("from").empty()) request.clear_from();
  if (route.Query("to").empty()) request.clear_to();
  request.set_group_by(route.Query("groupBy"));
  const std::string format = route.Query("format").empty() ? "json" : route.Query("format");
  if (format != "json" && format != "csv") return ErrorResponse(BadQuery("'format' must be json or csv."));
  if (billing_ == nullptr) return ErrorResponse({ErrorKind::kStoreUnavailable, "Billing is not connected.", ""});
  auto reply = billing_->Costs(request);
  if (!reply) return ErrorResponse({ErrorKind::kStoreUnavailable, "The billing service did not answer; retry later.", ""});
  if (!reply->ok()) return ErrorResponse(BadQuery(reply->error_message()));
  reply->clear_ok();
  if (format == "json") return Body(200, FullJson(*reply), "application/json; charset=utf-8");
  std::string csv =
      "subscriptionId,resourceGroup,groupName,groupId,priority,startedAt,endedAt,seconds,vcpuSeconds,gbSeconds,"
      "gpuSeconds,cost,currency,startEventId,endEventId,open\n";
  char numbers[160];
  for (const auto& line : reply->lines()) {
    std::snprintf(numbers, sizeof numbers, "%.3f,%.3f,%.3f,%.3f,%.9f", line.seconds(), line.vcpu_seconds(),
                  line.gb_seconds(), line.gpu_seconds(), line.cost());
    csv += CsvField(line.subscription_id()) + "," + CsvField(line.resource_group()) + "," +
           CsvField(line.group_name()) + "," + line.group_id() + "," + line.priority() + "," + Iso(line.started_at()) +
           "," + Iso(line.ended_at()) + "," + numbers + "," + reply->currency() + "," + CsvField(line.start_event_id()) +
           "," + CsvField(line.end_event_id()) + "," + (line.open() ? "true" : "false") + "\n";
  }
  return Body(200, csv, "text/csv; charset=utf-8");
}

HttpResponse GroupApi::GroupMetrics(const Route& route) {
  GroupKey key{route.subscription_id, route.resource_group, route.name};
  auto record = store_.Find(key);
  if (!record) return ErrorResponse({ErrorKind::kResourceNotFound, "The container group '" + route.name + "' was not found.", ""});
  const int64_t now = ToMillis(clock_.Now());
  int64_t from = now - 3'600'000, to = now;
  if (const std::string span = route.Query("timespan"); !span.empty()) {
    const auto slash = span.find('/');
    if (slash != std::string::npos) {
      auto start = ParseTime(span.substr(0, slash));
      auto end = ParseTime(span.substr(slash + 1));
      if (!start || !end || *end <= *start) return ErrorResponse(BadQuery("'timespan' must be <start>/<end> in RFC 3339 UTC."));
      from = ToMillis(*start);
      to = ToMillis(*end);
    } else if (auto length = ParseDurationMillis(span)) {
      from = now - *length;
    } else {
      return ErrorResponse(BadQuery("'timespan' must be <start>/<end> or an ISO 8601 duration such as PT1H."));
    }
  }
  const std::string interval_text = route.Query("interval").empty() ? "PT1M" : route.Query("interval");
  auto interval = ParseDurationMillis(interval_text);
  if (!interval || *interval < 60'000) return ErrorResponse(BadQuery("'interval' must be an ISO 8601 duration of a minute or more, such as PT1M."));
  if ((to - from) / *interval > 1440) return ErrorResponse(BadQuery("The timespan holds more than 1440 intervals; widen the interval."));
  const std::string aggregation = route.Query("aggregation").empty() ? "Average" : route.Query("aggregation");
  if (aggregation != "Average" && aggregation != "Maximum" && aggregation != "Minimum") {
    return ErrorResponse(BadQuery("'aggregation' must be Average, Maximum or Minimum."));
  }
  std::vector<std::string> names;
  {
    std::string list = route.Query("metricnames").empty() ? "CpuUsage,MemoryUsage" : route.Query("metricnames");
    for (size_t start = 0; start <= list.size();) {
      size_t comma = std::min(list.find(','), list.size());
      std::string name = list.substr(start, comma - start);
      if (!boost::iequals(name, "CpuUsage") && !boost::iequals(name, "MemoryUsage")) {
        return ErrorResponse(BadQuery("Unknown metric '" + name + "'; this resource has CpuUsage and MemoryUsage."));
      }
      names.push_back(boost::iequals(name, "CpuUsage") ? "CpuUsage" : "MemoryUsage");
      if (comma == list.size()) break;
      list[comma] = ' ';
      start = comma + 1;
    }
  }
  const auto samples = usage_history_ ? usage_history_->Samples(record->group_id, from - *interval, to)
                                      : std::map<std::string, std::vector<ContainerUsageHistory::Sample>>{};
  const int64_t first_bucket = from - from % *interval;
  const size_t buckets = static_cast<size_t>((to - first_bucket + *interval - 1) / *interval);

  ci::MetricsResponse response;
  response.set_cost(0);
  response.set_timespan(FormatTime(std::chrono::system_clock::time_point(std::chrono::milliseconds(from))) + "/" +
                        FormatTime(std::chrono::system_clock::time_point(std::chrono::milliseconds(to))));
  response.set_interval(interval_text);
  response.set_namespace_("Microsoft.ContainerInstance/containerGroups");
  response.set_resourceregion(record->spec.location());
  for (const auto& name : names) {
    auto* metric = response.add_value();
    metric->set_id(ResourceId(key) + "/providers/Microsoft.Insights/metrics/" + name);
    metric->set_type("Microsoft.Insights/metrics");
    metric->mutable_name()->set_value(name);
    metric->mutable_name()->set_localized_value(name == "CpuUsage" ? "CPU Usage" : "Memory Usage");
    metric->set_unit(name == "CpuUsage" ? "Count" : "Bytes");  // CpuUsage is in millicores, as on ACI
    metric->set_error_code("Success");
    for (const auto& container : record->spec.properties().containers()) {
      auto* series = metric->add_timeseries();
      auto* meta = series->add_metadatavalues();
      meta->mutable_name()->set_value("containerName");
      meta->mutable_name()->set_localized_value("containerName");
      meta->set_value(container.name());
      std::vector<std::vector<double>> values(buckets);
      auto it = samples.find(container.name());
      if (it != samples.end()) {
        const auto& list = it->second;
        for (size_t i = 0; i < list.size(); ++i) {
          if (list[i].at_ms < from || list[i].at_ms >= first_bucket + static_cast<int64_t>(buckets) * *interval) continue;
          const size_t bucket = static_cast<size_t>((list[i].at_ms - first_bucket) / *interval);
          if (name == "MemoryUsage") {
            values[bucket].push_back(list[i].memory_bytes);
          } else if (i > 0 && list[i].at_ms > list[i - 1].at_ms && list[i].cpu_seconds >= list[i - 1].cpu_seconds) {
            const double seconds = static_cast<double>(list[i].at_ms - list[i - 1].at_ms) / 1000.0;
            values[bucket].push_back((list[i].cpu_seconds - list[i - 1].cpu_seconds) / seconds * 1000.0);
          }
        }
      }
      for (size_t b = 0; b < buckets; ++b) {
        auto* point = series->add_data();
        point->set_time_stamp(FormatTime(std::chrono::system_clock::time_point(
            std::chrono::milliseconds(first_bucket + static_cast<int64_t>(b) * *interval))));
        if (values[b].empty()) continue;
        double sum = 0, low = values[b][0], high = values[b][0];
        for (double v : values[b]) sum += v, low = std::min(low, v), high = std::max(high, v);
        if (aggregation == "Average") point->set_average(sum / static_cast<double>(values[b].size()));
        if (aggregation == "Maximum") point->set_maximum(high);
        if (aggregation == "Minimum") point->set_minimum(low);
      }
    }
  }
  return Body(200, FullJson(response), "application/json; charset=utf-8");
}

}  // namespace skiff::gateway
