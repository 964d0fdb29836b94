#include "skiff/billing/meter.h"

#include <algorithm>

namespace skiff::billing {

Interval OpenInterval(const GroupMeter& meter, Millis end) {
  Interval interval;
  interval.group_id = meter.group_id;
  interval.subscription_id = meter.subscription_id;
  interval.resource_group = meter.resource_group;
  interval.name = meter.name;
  interval.node_id = meter.node_id;
  interval.resources = meter.resources;
  interval.start = meter.open_since.value_or(end);
  interval.end = std::max(end, interval.start);
  interval.start_event_id = meter.open_event_id;
  return interval;
}

void Meter::Seen(GroupMeter& meter, int64_t placement_generation, Millis at) {
  if (!meter.open_since || placement_generation != meter.placement_generation) return;
  meter.last_seen = std::max(meter.last_seen, at);
}

void Meter::Open(GroupMeter& meter, Millis at, const std::string& event_id, const std::string& node_id) const {
  meter.open_since = std::max(at, meter.billed_until);
  meter.open_event_id = event_id;
  meter.last_seen = *meter.open_since;
  meter.last_change = std::max(meter.last_change, at);
  if (!node_id.empty()) meter.node_id = node_id;
}

std::optional<Interval> Meter::Close(GroupMeter& meter, Millis at, const std::string& event_id,
                                     const std::string& reason) const {
  if (!meter.open_since) return std::nullopt;
  Interval interval = OpenInterval(meter, at);
  interval.end_event_id = event_id;
  interval.end_reason = reason;
  meter.billed_until = std::max(meter.billed_until, interval.end);
  meter.last_change = std::max(meter.last_change, at);
  meter.open_since.reset();
  meter.open_event_id.clear();
  return interval;
}

std::vector<Interval> Meter::Apply(GroupMeter& meter, const Signal& signal, Millis received_at) const {
  std::vector<Interval> closed;
  auto keep = [&closed](std::optional<Interval> interval) {
    if (interval) closed.push_back(std::move(*interval));
  };
  // A node whose clock runs ahead cannot bill the future.
  const Millis at = std::min(signal.at, received_at + options_.max_future_skew);

  if (signal.kind == SignalKind::kSpec) {
    meter.subscription_id = signal.subscription_id;
    meter.resource_group = signal.resource_group;
    meter.name = signal.name;
    if (meter.open_since && meter.resources != signal.resources) {
      // Each second is billed for what was asked during it.
      keep(Close(meter, at, signal.event_id, "Resized"));
      meter.resources = signal.resources;
      Open(meter, at, signal.event_id, "");
    } else {
      meter.resources = signal.resources;
    }
    return closed;
  }

  // Events of a copy older than the one billed come from a stale copy (re-placed elsewhere).
  if (signal.placement_generation > 0) {
    if (signal.placement_generation < meter.placement_generation) return closed;
    if (signal.placement_generation > meter.placement_generation) {
      const bool open = meter.open_since.has_value();
      meter.placement_generation = signal.placement_generation;
      // Ordering is per copy (each copy's node has its own clock); billed_until still keeps a
      // second from being billed twice. A stop of the old copy cannot pair with the new copy's
      // start, but the user's delete can.
      meter.last_change = 0;
      if (!meter.deleted) meter.unmatched_stop.reset();
      if (open) {
        if (signal.kind == SignalKind::kLost) {
          keep(Close(meter, std::max(*meter.open_since, std::min(at, meter.last_seen)), signal.event_id, signal.reason));
          return closed;
        }
        if (signal.kind == SignalKind::kStop || signal.kind == SignalKind::kDeleted) {
          keep(Close(meter, at, signal.event_id, signal.reason));
          if (signal.kind == SignalKind::kDeleted) meter.deleted = true;
          return closed;
        }
        keep(Close(meter, at, signal.event_id, "Replaced"));
      }
      if (!signal.node_id.empty()) meter.node_id = signal.node_id;
    }
  }

  switch (signal.kind) {
    case SignalKind::kSpec:
      break;
    case SignalKind::kPull:
    case SignalKind::kStart: {
      if (signal.kind == SignalKind::kPull && !options_.bill_from_pull) break;
      if (meter.open_since) {
        meter.last_seen = std::max(meter.last_seen, at);
        break;
      }
      if (meter.unmatched_stop && *meter.unmatched_stop > at) {
        // The stop overtook its start: bill the run now that both ends are known.
        Open(meter, at, signal.event_id, signal.node_id);
        keep(Close(meter, *meter.unmatched_stop, meter.unmatched_stop_event_id, meter.unmatched_stop_reason));
        meter.unmatched_stop.reset();
        break;
      }
      if (meter.deleted || at < meter.last_change) break;  // late start of a run already closed
      Open(meter, at, signal.event_id, signal.node_id);
      break;
    }
    case SignalKind::kStop:
    case SignalKind::kDeleted: {
      const bool deleting = signal.kind == SignalKind::kDeleted;
      if (deleting) meter.deleted = true;
      if (meter.open_since) {
        if (at < *meter.open_since && !deleting) break;  // the stop of an earlier run, arriving late
        keep(Close(meter, at, signal.event_id, signal.reason));
        break;
      }
      if (at >= meter.last_change && (!meter.unmatched_stop || at > *meter.unmatched_stop)) {
        meter.unmatched_stop = at;
        meter.unmatched_stop_event_id = signal.event_id;
        meter.unmatched_stop_reason = signal.reason;
        meter.last_change = at;
      }
      break;
    }
    case SignalKind::kLost:
      if (meter.open_since) {
        keep(Close(meter, std::max(*meter.open_since, std::min(at, meter.last_seen)), signal.event_id, signal.reason));
      }
      break;
  }
  return closed;
}

}  // namespace skiff::billing
