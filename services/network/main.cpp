// skiff-network: virtual networks, addresses and DNS name labels for the installation (any
// instance answers), and the group network namespaces of this host (CNI), with a DNS responder
// for the public zone and one on each bridge for names inside a virtual network.
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <thread>

#include "skiff/bus/bus_config.h"
#include "skiff/bus/nats_bus.h"
#include "skiff/config/config.h"
#include "skiff/events/v1/group_events.pb.h"
#include "skiff/lifecycle/loop_inbox.h"
#include "skiff/lifecycle/service_main.h"
#include "skiff/lifecycle/termination_signals.h"
#include "skiff/log/log.h"
#include "skiff/metrics/metrics.h"
#include "skiff/network/dns.h"
#include "skiff/network/host_adapters.h"
#include "skiff/network/host_network.h"
#include "skiff/network/pg_network_store.h"
#include "skiff/network/registry.h"
#include "skiff/store/migrations.h"
#include "skiff/store/pool.h"

namespace {

using namespace skiff;

network::Millis NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

network::Ipv4Prefix PrefixSetting(const config::Config& cfg, const std::string& key, network::Ipv4Prefix fallback) {
  auto text = cfg.Find(key);
  if (!text || text->empty()) return fallback;
  auto prefix = network::Ipv4Prefix::Parse(*text);
  if (!prefix) throw std::runtime_error(key + " = " + *text + " is not an IPv4 prefix");
  return *prefix;
}

std::string HostName() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

// Serves a request message type with a handler, answering garbage with an empty reply.
template <typename Request, typename Handler>
std::unique_ptr<bus::RequestServer> ServeProto(bus::NatsBus& bus, const std::string& subject, const std::string& queue,
                                               Handler handler, int workers) {
  return bus.Serve(
      subject, queue,
      [handler](const std::string&, const std::string& data) -> std::optional<std::string> {
        Request request;
        if (!request.ParseFromString(data)) return std::string();
        try {
          return handler(request).SerializeAsString();
        } catch (const std::exception& e) {
          spdlog::error("{}: {}", Request::descriptor()->name(), e.what());
          return std::nullopt;  // the caller times out and says the network is unavailable
        }
      },
      workers);
}

int Serve(const config::Config& cfg) {
  lifecycle::TerminationSignals termination;
  auto& registry_metrics = metrics::DefaultRegistry();
  metrics::MetricsServer metrics_server(cfg.GetString("metrics.listen", "127.0.0.1:9106"), registry_metrics);
  if (!metrics_server.error().empty()) spdlog::warn("no /metrics: {}", metrics_server.error());
  store::ConnectionPool pool(cfg.Require("store.url"), static_cast<size_t>(cfg.GetInt("store.pool_size", 4)));
  {
    auto conn = pool.Acquire();
    store::ApplyMigrations(*conn, network::kNetworkSchema, network::NetworkMigrations());
  }
  network::PgNetworkStore store(pool);
  network::RegistryOptions registry_options;
  registry_options.default_pool = PrefixSetting(cfg, "network.default_pool", registry_options.default_pool);
  registry_options.default_length = static_cast<int>(cfg.GetInt("network.default_prefix_length", 22));
  registry_options.public_pool = PrefixSetting(cfg, "network.public_pool", registry_options.public_pool);
  registry_options.dns_zone = cfg.GetString("dns.zone", registry_options.dns_zone);
  if (registry_options.default_length < registry_options.default_pool.length || registry_options.default_length > 29) {
    throw std::runtime_error("network.default_prefix_length must lie between the pool's length and 29");
  }
  network::Registry registry(store, registry_options, NowMillis);

  network::HostNetworkOptions host_options;
  host_options.agent = cfg.GetString("network.agent", HostName());
  host_options.masquerade = cfg.GetBool("network.masquerade", true);
  host_options.in_network_dns = cfg.GetBool("dns.in_network", true);
  host_options.internal_domain = cfg.GetString("dns.internal_domain", host_options.internal_domain);
  network::ExecCniRunner cni(cfg.GetString("network.cni_path", "/usr/lib/cni"));
  network::IptablesPlumbing plumbing(
      host_options.agent, cfg.GetList("network.blocked_destinations", {"169.254.0.0/16"}));
  network::HostNetwork host(store, cni, plumbing, host_options);
  auto reconciled = host.Reconcile();
  spdlog::info("reconciled host {}: {} attachments and {} bridges left from before removed", host_options.agent,
               reconciled.attachments_removed, reconciled.bridges_removed);

  auto& attaches = registry_metrics.GetHistogram("skiff_network_attach_seconds", "Time to attach a group's namespace.");
  auto& detaches = registry_metrics.GetHistogram("skiff_network_detach_seconds", "Time to detach a group's namespace.");
  auto& failures = registry_metrics.GetCounter("skiff_network_attach_failures_total", "Attaches that failed.");
  auto& claims_gauge = registry_metrics.GetGauge("skiff_network_claims", "Groups holding addresses.");

  network::DnsTable table(registry_options.dns_zone, host_options.internal_domain);
  table.Rebuild(store.AllClaims());
  std::unique_ptr<network::DnsResponder> public_dns;
  if (auto listen = cfg.GetString("dns.listen", "127.0.0.1:5353"); !listen.empty()) {
    auto colon = listen.rfind(':');
    std::string error;
    public_dns = network::DnsResponder::Start(listen.substr(0, colon), std::stoi(listen.substr(colon + 1)), table, "",
                                              &error);
    if (!public_dns) spdlog::warn("no public DNS responder: {}", error);
    else spdlog::info("DNS for {} on {}:{}/udp", registry_options.dns_zone, listen.substr(0, colon), public_dns->port());
  }
  const int bridge_dns_port = static_cast<int>(cfg.GetInt("dns.bridge_port", 53));
  // Names outside Skiff's go to the host's resolvers (dns.upstreams overrides; "none" refuses them).
  const std::string upstream_setting = cfg.GetString("dns.upstreams", "");
  const auto upstreams = upstream_setting == "none"   ? std::vector<network::DnsUpstream>{}
                         : upstream_setting.empty() ? network::UpstreamsFromResolvConf()
                                                    : network::ParseUpstreams(upstream_setting);
  std::map<std::string, std::unique_ptr<network::DnsResponder>> bridge_dns;
  auto refresh = [&] {
    auto claims = store.AllClaims();
    claims_gauge.Set(static_cast<double>(claims.size()));
    table.Rebuild(claims);
    if (!host_options.in_network_dns) return;
    std::set<std::string> present;
    for (const auto& bridge : host.Bridges()) {
      present.insert(bridge.name);
      if (bridge_dns.count(bridge.name)) continue;
      std::string error;
      auto responder = network::DnsResponder::Start(network::FormatIpv4(bridge.gateway), bridge_dns_port, table,
                                                    bridge.domain, &error, upstreams, bridge.subnet);
      if (!responder) {
        spdlog::warn("no DNS on bridge {}: {}", bridge.name, error);
        continue;
      }
      bridge_dns[bridge.name] = std::move(responder);
    }
    for (auto it = bridge_dns.begin(); it != bridge_dns.end();) {
      it = present.count(it->first) ? std::next(it) : bridge_dns.erase(it);
    }
  };
  refresh();

  bus::NatsBus bus(bus::ConnectOptionsFrom(cfg, "skiff-network"));
  bus.EnsureStream({"SKIFF_EVENTS", {"skiff.events.>"}, std::chrono::seconds(120), true});
  lifecycle::LoopInbox inbox;
  auto vnets = ServeProto<network::v1::VnetApiRequest>(
      bus, "skiff.network.vnets", "network", [&](const auto& r) { return registry.Vnets(r); }, 2);
  auto claims = ServeProto<network::v1::ClaimRequest>(
      bus, "skiff.network.claim", "network",
      [&](const auto& r) {
        auto reply = registry.Claim(r);
        inbox.Post(refresh);
        return reply;
      },
      4);
  auto resolve = ServeProto<network::v1::ResolveRequest>(
      bus, "skiff.network.resolve", "network",
      [&](const network::v1::ResolveRequest& r) {
        network::v1::ResolveReply reply;
        if (auto found = table.FindFqdn(r.fqdn())) {
          reply.set_found(true);
          reply.set_group_id(found->first.group_id);
          reply.set_private_ip(network::FormatIpv4(found->first.private_ip));
          if (found->first.public_ip) reply.set_public_ip(network::FormatIpv4(*found->first.public_ip));
          for (const auto& port : found->first.ports) *reply.add_ports() = port;
        }
        return reply;
      },
      2);
  const std::string agent_subject = "skiff.network." + host_options.agent;
  auto attach = ServeProto<network::v1::AttachRequest>(
      bus, agent_subject + ".attach", "network-" + host_options.agent,
      [&](const network::v1::AttachRequest& r) {
        const auto started = std::chrono::steady_clock::now();
        auto reply = host.Attach(r);
        attaches.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        if (!reply.ok()) {
          failures.Add();
          spdlog::warn("attach {} failed: {} {}", r.group().group_id(), reply.error_code(), reply.error_message());
        }
        inbox.Post(refresh);
        return reply;
      },
      2);
  auto detach = ServeProto<network::v1::DetachRequest>(
      bus, agent_subject + ".detach", "network-" + host_options.agent,
      [&](const network::v1::DetachRequest& r) {
        const auto started = std::chrono::steady_clock::now();
        auto reply = host.Detach(r);
        detaches.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        inbox.Post(refresh);
        return reply;
      },
      2);

  // Group lifecycle from the gateway: deletes release, creates and updates confirm claims.
  auto consumer = bus.PullSubscribe("SKIFF_EVENTS", "skiff.events.group.>", cfg.GetString("network.consumer", "network"));
  std::atomic<bool> stopping{false};
  std::thread loop([&] {
    auto next_refresh = std::chrono::steady_clock::now();
    auto next_reconcile = next_refresh + std::chrono::seconds(cfg.GetInt("network.reconcile_seconds", 30));
    while (!stopping) {
      try {
        for (auto& message : consumer->Fetch(100, std::chrono::milliseconds(200))) {
          events::v1::GroupEvent event;
          if (event.ParseFromString(message.Data())) {
            if (event.has_deleted()) registry.Release(event.group().group_id());
            else if (event.has_created() || event.has_updated()) registry.Confirm(event.group().group_id());
          }
          message.Ack();
          inbox.Post(refresh);
        }
        for (auto& task : inbox.Take()) task();
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_refresh) {
          refresh();
          next_refresh = now + std::chrono::seconds(2);
        }
        if (now >= next_reconcile) {
          auto stats = host.Reconcile();
          if (stats.attachments_removed + stats.bridges_removed > 0) {
            spdlog::info("reconcile removed {} attachments and {} bridges", stats.attachments_removed,
                         stats.bridges_removed);
          }
          if (int swept = registry.SweepUnconfirmed()) spdlog::info("let go of {} claims never stored", swept);
          next_reconcile = now + std::chrono::seconds(cfg.GetInt("network.reconcile_seconds", 30));
        }
      } catch (const std::exception& e) {
        spdlog::error("network loop: {}", e.what());
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    }
  });
  spdlog::info("network service for host {} ready (zone {}, public pool {}, default pool {})", host_options.agent,
               registry_options.dns_zone, registry_options.public_pool.ToString(),
               registry_options.default_pool.ToString());
  int signal = termination.Wait();
  spdlog::info("signal {}: shutting down", signal);
  stopping = true;
  loop.join();
  attach.reset();
  detach.reset();
  claims.reset();
  vnets.reset();
  resolve.reset();
  bus.Drain(std::chrono::seconds(5));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return skiff::lifecycle::ServiceMain(argc, argv, "skiff-network", "virtual networks, addresses, DNS and group namespaces (CNI)", "network", Serve);
}
