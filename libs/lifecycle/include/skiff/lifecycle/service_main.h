#pragma once

#include <functional>
#include <string>

namespace skiff::config {
class Config;
}

namespace skiff::lifecycle {

// The main() of a service whose one command is `serve` (the default): `-c/--config FILE` (INI,
// SKIFF_* environment variables override it), logging named `log_name` at `log.level`, and any
// exception reported on stderr as "<program>: <what>" with exit status 1.
int ServiceMain(int argc, char** argv, const std::string& program, const std::string& description,
                const std::string& log_name, const std::function<int(const config::Config&)>& serve);

}  // namespace skiff::lifecycle
