// skiff-gateway: the HTTPS front door. Wires config, Postgres, NATS and the API core together;
// the logic lives in gateway_core.
#include <CLI/CLI.hpp>

#include <atomic>
#include <fstream>
#include <thread>
#include <iostream>

#include "skiff/bus/bus_config.h"
#include "skiff/bus/nats_bus.h"
#include "skiff/bus/subjects.h"
#include "skiff/config/config.h"
#include "skiff/crypto/crypto.h"
#include "skiff/secrets/group_secrets.h"
#include "skiff/gateway/cached_group_store.h"
#include "skiff/gateway/group_api.h"
#include "skiff/gateway/https_server.h"
#include "skiff/gateway/ingress.h"
#include "skiff/gateway/nats_image_catalog.h"
#include "skiff/gateway/nats_node_link.h"
#include "skiff/gateway/pg_group_store.h"
#include "skiff/lifecycle/termination_signals.h"
#include "skiff/log/log.h"
#include "skiff/metrics/metrics.h"
#include "skiff/store/migrations.h"
#include "skiff/store/outbox_relay.h"
#include "skiff/store/pool.h"

namespace {

// A label value from a fixed set: a client cannot grow the metrics without bound.
std::string KnownMethod(const std::string& method) {
  for (const char* known : {"GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"}) {
    if (method == known) return method;
  }
  return "other";
}

using namespace skiff;

std::set<int> ParsePorts(const std::vector<std::string>& items) {
  std::set<int> ports;
  for (const auto& item : items) ports.insert(std::stoi(item));
  return ports;
}

gateway::GroupApiOptions ApiOptions(const config::Config& cfg) {
  gateway::GroupApiOptions options;
  auto versions = cfg.GetList("gateway.api_versions", {"2023-05-01", "2022-10-01-preview", "2021-10-01",
                                                        "2021-09-01", "2021-07-01", "2021-03-01"});
  options.api_versions = {versions.begin(), versions.end()};
  options.page_size = static_cast<int>(cfg.GetInt("gateway.page_size", 100));
  if (options.page_size < 1) throw std::runtime_error("gateway.page_size must be at least 1");
  options.public_url = cfg.GetString("gateway.public_url", "");
  options.limits.max_cpu_per_group = cfg.GetDouble("gateway.max_cpu_per_group", 4.0);
  options.limits.max_memory_gb_per_group = cfg.GetDouble("gateway.max_memory_gb_per_group", 16.0);
  options.limits.reserved_ports = ParsePorts(cfg.GetList("gateway.reserved_ports", {"10250", "10255"}));
  options.limits.locations = cfg.GetList("gateway.locations", {"local"});
  options.limits.git_insecure_hosts = cfg.GetList("gateway.git_insecure_hosts", {});
  options.limits.default_isolation = cfg.GetString("gateway.default_isolation", "Container");
  if (options.limits.default_isolation != "Container" && options.limits.default_isolation != "MicroVM") {
    throw std::runtime_error("gateway.default_isolation must be Container or MicroVM");
  }
  for (const auto& subscription : cfg.GetList("gateway.microvm_subscriptions", {})) {
    options.limits.microvm_subscriptions.insert(subscription);
  }
  options.quotas.groups = cfg.GetInt("gateway.quota_groups", 100);
  options.quotas.cores = cfg.GetDouble("gateway.quota_cores", 100);
  options.quotas.creates_per_5_minutes = cfg.GetInt("gateway.creates_per_5_minutes", 100);
  options.quotas.creates_per_hour = cfg.GetInt("gateway.creates_per_hour", 300);
  options.tenant_id = cfg.GetString("gateway.tenant_id", "adfs");
  return options;
}

int Migrate(store::ConnectionPool& pool) {
  auto conn = pool.Acquire();
  return store::ApplyMigrations(*conn, gateway::kGatewaySchema, gateway::GatewayMigrations());
}

int Serve(const config::Config& cfg) {
  lifecycle::TerminationSignals termination;  // before any thread starts

  store::ConnectionPool pool(cfg.Require("store.url"), static_cast<size_t>(cfg.GetInt("store.pool_size", 8)));
  Migrate(pool);

  bus::NatsBus bus(bus::ConnectOptionsFrom(cfg, "skiff-gateway"));
  bus.EnsureStream({"SKIFF_EVENTS", {"skiff.events.>"}, std::chrono::seconds(120), true});

  store::OutboxRelay relay(pool, bus, {gateway::kGatewaySchema, 200, std::chrono::milliseconds(200)});
  relay.Start();

  crypto::SecretBox secrets =
      crypto::SecretBox::FromBase64Keys(cfg.Require("gateway.secret_key"), cfg.GetString("gateway.old_secret_keys", ""));
  gateway::PgGroupStore pg_store(pool);
  gateway::CachedGroupStore group_store(
      pg_store, std::chrono::milliseconds(cfg.GetInt("gateway.read_cache_ttl_ms", 1000)), 100000,
      [] { return std::chrono::steady_clock::now(); },
      std::chrono::milliseconds(cfg.GetInt("gateway.usage_cache_ms", 1000)));
  gateway::SystemClock clock;
  gateway::GroupApi api(group_store, clock, secrets, ApiOptions(cfg), [] { return crypto::NewUuid(); });
  api.OnEventWritten([&relay] { relay.Notify(); });
  gateway::IdentityApi identity(pg_store, clock,
                                {std::chrono::seconds(cfg.GetInt("gateway.token_lifetime_seconds", 3600)),
                                 cfg.GetString("gateway.tenant_id", "adfs")});
  api.SetIdentityApi(&identity);
  gateway::NatsImageCatalog image_catalog(bus, std::chrono::milliseconds(cfg.GetInt("gateway.image_catalog_timeout_ms", 2000)));
  api.SetImageCatalog(&image_catalog);
  gateway::NatsNodeLink node_link(bus, std::chrono::milliseconds(cfg.GetInt("gateway.node_timeout_ms", 5000)));
  api.SetNodeLink(&node_link);
  gateway::NatsBillingLink billing_link(bus, std::chrono::milliseconds(cfg.GetInt("gateway.billing_timeout_ms", 10000)));
  api.SetBillingLink(&billing_link);
  // Every group claims its addresses from the network service; a gateway without it (tests of
  // the API alone) shows no addresses and answers 503 for virtual networks.
  gateway::NatsNetworkLink network_link(bus, std::chrono::milliseconds(cfg.GetInt("gateway.network_timeout_ms", 10000)));
  if (cfg.GetBool("gateway.network", true)) api.SetNetworkLink(&network_link);
  gateway::ContainerUsageHistory usage_history;
  auto usage_reports = bus.Subscribe(std::string(subjects::kEveryUsage), [&usage_history](const std::string& subject, const std::string& data) {
    node::v1::NodeUsage usage;
    if (usage.ParseFromString(data) && subjects::PublishedBy(subject, usage.node_id())) usage_history.Record(usage);
  });
  api.SetUsageHistory(&usage_history);

  gateway::HttpsServerOptions server_options;
  std::string listen = cfg.GetString("gateway.listen", "127.0.0.1:8443");
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("gateway.listen must be address:port");
  server_options.address = listen.substr(0, colon);
  server_options.port = static_cast<uint16_t>(std::stoi(listen.substr(colon + 1)));
  server_options.certificate_chain_file = cfg.Require("gateway.tls_cert");
  server_options.private_key_file = cfg.Require("gateway.tls_key");
  server_options.threads = static_cast<int>(cfg.GetInt("gateway.threads", 8));
  server_options.body_limit = static_cast<size_t>(cfg.GetInt("gateway.body_limit", 1024 * 1024));
  auto& registry = metrics::DefaultRegistry();
  metrics::MetricsServer metrics_server(cfg.GetString("metrics.listen", "127.0.0.1:9100"), registry);
  if (!metrics_server.error().empty()) spdlog::warn("no /metrics: {}", metrics_server.error());
  auto& latency = registry.GetHistogram("skiff_gateway_request_seconds", "Time to answer an API request.");
  gateway::HttpsServer server(
      server_options,
      [&api, &registry, &latency](const gateway::HttpRequest& r) {
        const auto started = std::chrono::steady_clock::now();
        auto response = api.Handle(r);
        latency.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        registry
            .GetCounter("skiff_gateway_requests_total", "API requests answered, by method and status.",
                        {{"method", KnownMethod(r.method)}, {"code", std::to_string(response.status)}})
            .Add();
        return response;
      },
      [&api](const gateway::HttpRequest& r) { return api.OpenStream(r); });
  server.Start();
  spdlog::info("gateway listening on https://{}:{}", server_options.address, server.BoundPort());
  if (auto port_file = cfg.Find("gateway.port_file")) {
    std::ofstream(*port_file) << server.BoundPort() << "\n";
  }

  // The HTTP ingress: requests for a group's DNS name go to its published port.
  std::unique_ptr<gateway::IngressRouter> ingress_router;
  std::unique_ptr<gateway::IngressServer> ingress;
  if (auto ingress_listen = cfg.GetString("ingress.listen", ""); !ingress_listen.empty() && cfg.GetBool("gateway.network", true)) {
    auto at = ingress_listen.rfind(':');
    if (at == std::string::npos) throw std::runtime_error("ingress.listen must be address:port");
    gateway::IngressOptions ingress_options;
    ingress_options.address = ingress_listen.substr(0, at);
    ingress_options.port = static_cast<uint16_t>(std::stoi(ingress_listen.substr(at + 1)));
    ingress_router = std::make_unique<gateway::IngressRouter>(network_link);
    ingress = std::make_unique<gateway::IngressServer>(ingress_options, *ingress_router);
    ingress->Start();
    spdlog::info("ingress listening on http://{}:{}", ingress_options.address, ingress->BoundPort());
    if (auto port_file = cfg.Find("ingress.port_file")) std::ofstream(*port_file) << ingress->BoundPort() << "\n";
  }

  // The read model: follows what the scheduler and the nodes report, so GET shows instanceView
  // and the create operation completes.
  std::atomic<bool> stopping{false};
  std::thread read_model([&] {
    std::unique_ptr<bus::PullConsumer> consumer;
    while (!stopping) {
      try {
        if (!consumer) {
          consumer = bus.PullSubscribe("SKIFF_EVENTS", "skiff.events.>", cfg.GetString("gateway.read_model_consumer",
                                                                                       "gateway-read-model"));
        }
        auto messages = consumer->Fetch(256, std::chrono::milliseconds(500));
        std::vector<gateway::RuntimeEvent> events;
        for (auto& message : messages) {
          if (auto event = gateway::DecodeRuntimeEvent(message.Subject(), message.Data())) events.push_back(*event);
        }
        try {
          gateway::ApplyRuntimeBatch(pg_store, events);
          for (auto& message : messages) message.Ack();
        } catch (const std::exception& e) {
          spdlog::warn("read model: {} events not applied, they come again: {}", events.size(), e.what());
          for (auto& message : messages) message.Nak();
          std::this_thread::sleep_for(std::chrono::seconds(1));
        }
      } catch (const std::exception& e) {
        spdlog::warn("read model: {}", e.what());
        consumer.reset();
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    }
  });

  int signal = termination.Wait();
  spdlog::info("signal {}: shutting down", signal);
  stopping = true;
  read_model.join();
  server.Stop(5);
  usage_reports.reset();
  relay.Stop();
  bus.Drain(std::chrono::seconds(5));
  spdlog::info("gateway stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"skiff-gateway: the ACI-compatible HTTPS API of Skiff"};
  std::string config_file;
  app.add_option("-c,--config", config_file, "INI config file (SKIFF_* environment variables override it)");
  app.require_subcommand(0, 1);
  auto* serve = app.add_subcommand("serve", "Run the HTTPS API (the default)");
  auto* migrate = app.add_subcommand("migrate", "Apply database migrations and exit");
  auto* token = app.add_subcommand("create-token", "Create an API token bound to a subscription; prints it once");
  std::string subscription, token_name;
  token->add_option("--subscription", subscription, "Subscription id (a UUID)")->required();
  token->add_option("--name", token_name, "A label for the token");
  auto* principal = app.add_subcommand(
      "create-service-principal",
      "Create a service principal (client id + secret for az login / ClientSecretCredential) bound to a "
      "subscription; prints the secret once");
  principal->add_option("--subscription", subscription, "Subscription id (a UUID)")->required();
  principal->add_option("--name", token_name, "A display name");
  auto* reseal = app.add_subcommand(
      "reseal-secrets",
      "Key rotation: seal every stored secret again under gateway.secret_key (opening them with "
      "gateway.old_secret_keys); prints what it rewrote");
  CLI11_PARSE(app, argc, argv);
  (void)serve;

  try {
    config::Config cfg = config_file.empty() ? config::Config() : config::Config::FromFile(config_file);
    log::Init("gateway", cfg.GetString("log.level", "info"));
    if (migrate->parsed()) {
      store::ConnectionPool pool(cfg.Require("store.url"), 1);
      std::cout << "applied " << Migrate(pool) << " migrations\n";
      return 0;
    }
    if (token->parsed()) {
      if (!crypto::IsUuid(subscription)) throw std::runtime_error("--subscription must be a UUID");
      store::ConnectionPool pool(cfg.Require("store.url"), 1);
      Migrate(pool);
      gateway::PgGroupStore store(pool);
      std::string value = crypto::NewApiToken();
      store.AddToken(crypto::HashApiToken(value), subscription, token_name);
      std::cout << value << "\n";
      return 0;
    }
    if (principal->parsed()) {
      if (!crypto::IsUuid(subscription)) throw std::runtime_error("--subscription must be a UUID");
      store::ConnectionPool pool(cfg.Require("store.url"), 1);
      Migrate(pool);
      gateway::PgGroupStore store(pool);
      auto [record, secret] = gateway::IdentityApi::NewServicePrincipal(subscription, token_name);
      store.AddServicePrincipal(record);
      // The shape of `az ad sp create-for-rbac`'s answer.
      std::cout << "{\"appId\": \"" << record.client_id << "\", \"password\": \"" << secret
                << "\", \"tenant\": \"" << cfg.GetString("gateway.tenant_id", "adfs") << "\"}\n";
      return 0;
    }
    if (reseal->parsed()) {
      store::ConnectionPool pool(cfg.Require("store.url"), 1);
      Migrate(pool);
      gateway::PgGroupStore store(pool);
      const crypto::SecretBox box = crypto::SecretBox::FromBase64Keys(cfg.Require("gateway.secret_key"),
                                                                      cfg.GetString("gateway.old_secret_keys", ""));
      secrets::ResealCount total;
      int groups = store.RewriteSpecs([&](const gateway::GroupRecord& record, containerinstance::v1::ContainerGroup* spec) {
        secrets::ResealCount count = secrets::ResealAll(*spec, box, record.key.subscription_id, record.group_id);
        total.resealed += count.resealed;
        total.unopenable += count.unopenable;
        return count.resealed > 0;
      });
      std::cout << "resealed " << total.resealed << " values in " << groups << " groups under key "
                << box.current_key_id() << "; " << total.unopenable << " values open with no configured key\n";
      return total.unopenable == 0 ? 0 : 2;
    }
    return Serve(cfg);
  } catch (const std::exception& e) {
    std::cerr << "skiff-gateway: " << e.what() << "\n";
    return 1;
  }
}
