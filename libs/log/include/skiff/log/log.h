#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace skiff::log {

// Sets the process-wide spdlog logger: one line per record on stderr, tagged with the service
// name so the local stack's interleaved output stays readable. Level: trace..critical.
void Init(const std::string& service, const std::string& level);

}  // namespace skiff::log
