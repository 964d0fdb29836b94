#pragma once

#include <string>

#include "skiff/bus/nats_bus.h"

namespace skiff::config {
class Config;
}

namespace skiff::bus {

// A service's NATS connection from its configuration: bus.url, bus.nkey_seed_file, bus.tls_ca,
// bus.tls_cert, bus.tls_key (see docs/operations.md).
ConnectOptions ConnectOptionsFrom(const config::Config& cfg, const std::string& client_name);

}  // namespace skiff::bus
