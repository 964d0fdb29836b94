#include "skiff/timefmt/rfc3339.h"

#include <cctype>
#include <cstdio>
#include <ctime>

namespace skiff::timefmt {

std::optional<std::chrono::system_clock::time_point> ParseTime(const std::string& text) {
  std::tm parts{};
  const char* rest = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &parts);
  if (rest == nullptr) return std::nullopt;
  auto time = std::chrono::system_clock::from_time_t(::timegm(&parts));
  if (*rest == '.') {
    int64_t fraction = 0, scale = 1;
    for (++rest; std::isdigit(static_cast<unsigned char>(*rest)); ++rest) {
      if (scale < 1000000000) fraction = fraction * 10 + (*rest - '0'), scale *= 10;
    }
    time += std::chrono::nanoseconds(fraction * (1000000000 / scale));
  }
  if (*rest != 'Z' || rest[1] != '\0') return std::nullopt;
  return time;
}

namespace {

// `fraction_digits` is 3 or 6.
std::string Format(std::chrono::system_clock::time_point time, int fraction_digits) {
  const int64_t scale = fraction_digits == 6 ? 1000000 : 1000;
  const auto ticks = fraction_digits == 6
                         ? std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count()
                         : std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ticks / scale);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%0*dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, fraction_digits, static_cast<int>(ticks % scale));
  return buffer;
}

}  // namespace

std::string FormatTime(std::chrono::system_clock::time_point time) { return Format(time, 3); }
std::string FormatTimeMicros(std::chrono::system_clock::time_point time) { return Format(time, 6); }

}  // namespace skiff::timefmt
