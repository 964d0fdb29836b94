#include "skiff/log/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace skiff::log {

void Init(const std::string& service, const std::string& level) {
  auto logger = spdlog::stderr_color_mt(service);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

}  // namespace skiff::log
