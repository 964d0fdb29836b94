#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace skiff::timefmt {

// RFC 3339 UTC with milliseconds, as ARM writes times: 2023-05-01T12:00:00.000Z.
std::string FormatTime(std::chrono::system_clock::time_point time);
// The same with microseconds (log lines): 2023-05-01T12:00:00.000000Z.
std::string FormatTimeMicros(std::chrono::system_clock::time_point time);
// The inverse of FormatTime (fractional seconds optional); nullopt when it is not such a time.
std::optional<std::chrono::system_clock::time_point> ParseTime(const std::string& text);

}  // namespace skiff::timefmt
