#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "skiff/timefmt/rfc3339.h"

namespace skiff::gateway {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point Now() const = 0;
};

class SystemClock : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override { return std::chrono::system_clock::now(); }
};

// ARM's time format (libs/timefmt).
using timefmt::FormatTime;
using timefmt::ParseTime;

}  // namespace skiff::gateway
