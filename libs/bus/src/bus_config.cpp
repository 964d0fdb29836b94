#include "skiff/bus/bus_config.h"

#include "skiff/config/config.h"

namespace skiff::bus {

ConnectOptions ConnectOptionsFrom(const config::Config& cfg, const std::string& client_name) {
  ConnectOptions options;
  options.url = cfg.GetString("bus.url", options.url);
  options.client_name = client_name;
  options.nkey_seed_file = cfg.GetString("bus.nkey_seed_file", "");
  options.tls_ca_file = cfg.GetString("bus.tls_ca", "");
  options.tls_cert_file = cfg.GetString("bus.tls_cert", "");
  options.tls_key_file = cfg.GetString("bus.tls_key", "");
  return options;
}

}  // namespace skiff::bus
