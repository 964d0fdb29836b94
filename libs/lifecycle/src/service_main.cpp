#include "skiff/lifecycle/service_main.h"

#include <CLI/CLI.hpp>

#include <iostream>

#include "skiff/config/config.h"
#include "skiff/log/log.h"

namespace skiff::lifecycle {

int ServiceMain(int argc, char** argv, const std::string& program, const std::string& description,
                const std::string& log_name, const std::function<int(const config::Config&)>& serve) {
  CLI::App app{program + ": " + description};
  std::string config_file;
  app.add_option("-c,--config", config_file, "INI config file (SKIFF_* environment variables override it)");
  app.require_subcommand(0, 1);
  app.add_subcommand("serve", "Serve (the default)");
  CLI11_PARSE(app, argc, argv);
  try {
    config::Config cfg = config_file.empty() ? config::Config() : config::Config::FromFile(config_file);
    log::Init(log_name, cfg.GetString("log.level", "info"));
    return serve(cfg);
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace skiff::lifecycle
