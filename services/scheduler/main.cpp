// skiff-scheduler: places accepted container groups on nodes and keeps them placed. Several may
// run side by side: they share one durable JetStream consumer and Postgres keeps them honest.
#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdio>
#include <condition_variable>
#include <deque>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "skiff/bus/bus_config.h"
#include "skiff/bus/nats_bus.h"
#include "skiff/bus/subjects.h"
#include "skiff/config/config.h"
#include "skiff/crypto/crypto.h"
#include "skiff/lifecycle/loop_inbox.h"
#include "skiff/lifecycle/termination_signals.h"
#include "skiff/log/log.h"
#include "skiff/metrics/metrics.h"
#include "skiff/scheduler/nats_node_commands.h"
#include "skiff/scheduler/pg_scheduler_store.h"
#include "skiff/scheduler/scheduler_service.h"
#include "skiff/store/migrations.h"
#include "skiff/store/outbox_relay.h"
#include "skiff/store/pool.h"

namespace {

using namespace skiff;

int Serve(const config::Config& cfg) {
  lifecycle::TerminationSignals termination;  // before any thread starts
  store::ConnectionPool pool(cfg.Require("store.url"), static_cast<size_t>(cfg.GetInt("store.pool_size", 4)));
  {
    auto conn = pool.Acquire();
    store::ApplyMigrations(*conn, scheduler::kSchedulerSchema, scheduler::SchedulerMigrations());
  }
  bus::NatsBus bus(bus::ConnectOptionsFrom(cfg, "skiff-scheduler"));
  bus.EnsureStream({"SKIFF_EVENTS", {"skiff.events.>"}, std::chrono::seconds(120), true});
  store::OutboxRelay relay(pool, bus, {scheduler::kSchedulerSchema, 500, std::chrono::milliseconds(200)});

  scheduler::PlacementCore::Options placement_options;
  placement_options.strategy =
      cfg.GetString("scheduler.strategy", "binpack") == "spread" ? scheduler::Strategy::kSpread
                                                                 : scheduler::Strategy::kBinPack;
  placement_options.overcommit_ratio = cfg.GetDouble("scheduler.overcommit_ratio", 1.0);
  scheduler::PlacementCore placement(placement_options);
  scheduler::PgSchedulerStore store(pool, [&relay] { relay.Notify(); });
  scheduler::NatsNodeCommands commands(bus, static_cast<int>(cfg.GetInt("scheduler.dispatch_workers", 16)));

  scheduler::SchedulerOptions options;
  options.node_lost_after = std::chrono::milliseconds(cfg.GetInt("scheduler.node_lost_after_ms", 10000));
  options.pending_timeout = std::chrono::milliseconds(cfg.GetInt("scheduler.pending_timeout_ms", 600000));
  options.refresh_interval = std::chrono::milliseconds(cfg.GetInt("scheduler.refresh_ms", 5000));
  scheduler::SchedulerService service(placement, store, commands, [] { return std::chrono::system_clock::now(); },
                                      [] { return crypto::NewUuid(); }, options);
  service.Start();
  relay.Start();

  auto& registry = metrics::DefaultRegistry();
  metrics::MetricsServer metrics_server(cfg.GetString("metrics.listen", "127.0.0.1:9102"), registry);
  if (!metrics_server.error().empty()) spdlog::warn("no /metrics: {}", metrics_server.error());
  auto& group_events = registry.GetCounter("skiff_scheduler_group_events_total", "Group events placed.");
  auto& pass_seconds = registry.GetHistogram("skiff_scheduler_pass_seconds", "Time to place one batch of group events.");
  auto& event_failures = registry.GetCounter("skiff_scheduler_batch_failures_total", "Batches that failed and came again.");

  lifecycle::LoopInbox inbox;
  auto heartbeats = bus.Subscribe(std::string(subjects::kEveryHeartbeat), [&](const std::string& subject, const std::string& data) {
    node::v1::NodeHeartbeat heartbeat;
    if (!heartbeat.ParseFromString(data) || !subjects::PublishedBy(subject, heartbeat.node_id())) return;
    inbox.Post([&service, heartbeat] { service.HandleHeartbeat(heartbeat); });
  });
  // Operator requests: answered by the loop, so they see a consistent view.
  auto admin = bus.Serve(
      "skiff.scheduler.*", "scheduler",
      [&](const std::string& subject, const std::string& data) -> std::optional<std::string> {
        const std::string verb = subject.substr(subject.rfind('.') + 1);
        scheduler::v1::NodeAdminRequest request;
        if (verb != "nodes" && !request.ParseFromString(data)) return std::nullopt;
        auto answer = std::make_shared<std::promise<std::string>>();
        auto future = answer->get_future();
        inbox.Post([&service, verb, request, answer] {
          if (verb == "nodes") return answer->set_value(service.Nodes().SerializeAsString());
          scheduler::v1::NodeAdminReply reply;
          if (verb == "cordon") reply = service.Cordon(request.node_id());
          else if (verb == "uncordon") reply = service.Uncordon(request.node_id());
          else if (verb == "drain") reply = service.Drain(request.node_id());
          else reply.set_error_code("UnknownCommand");
          answer->set_value(reply.SerializeAsString());
        });
        if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) return std::nullopt;
        return future.get();
      },
      2);

  auto consumer = bus.PullSubscribe("SKIFF_EVENTS", "skiff.events.group.*",
                                    cfg.GetString("scheduler.consumer", "scheduler"));
  // The nodes' group states: ended groups give their reservation back.
  // Named apart from the earlier "-sandbox" durable, whose filter (one token fewer) predates
  // subjects that name their node.
  auto sandbox_events = bus.PullSubscribe("SKIFF_EVENTS", "skiff.events.sandbox.>",
                                          cfg.GetString("scheduler.consumer", "scheduler") + "-sandbox-events");
  const auto tick_every = std::chrono::milliseconds(cfg.GetInt("scheduler.tick_ms", 500));
  std::atomic<bool> stopping{false};
  std::thread loop([&] {
    auto next_tick = std::chrono::steady_clock::now();
    auto next_gauges = next_tick;
    while (!stopping) {
      try {
        auto messages = consumer->Fetch(256, std::chrono::milliseconds(100));
        std::vector<events::v1::GroupEvent> batch;
        for (auto& message : messages) {
          const std::string subject = message.Subject();
          const std::string kind = subject.substr(subject.rfind('.') + 1);
          events::v1::GroupEvent event;
          if ((kind == "created" || kind == "updated" || kind == "deleted") && event.ParseFromString(message.Data())) {
            batch.push_back(std::move(event));
          }
        }
        try {
          const auto started = std::chrono::steady_clock::now();
          if (!batch.empty()) service.HandleGroupEvents(batch);
          for (auto& message : messages) message.Ack();
          if (!batch.empty()) {
            group_events.Add(static_cast<double>(batch.size()));
            pass_seconds.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
          }
        } catch (const std::exception& e) {
          event_failures.Add();
          spdlog::error("placing {} events failed, they come again: {}", batch.size(), e.what());
          for (auto& message : messages) message.Nak();
          std::this_thread::sleep_for(std::chrono::seconds(1));
        }
        for (auto& message : sandbox_events->Fetch(256, std::chrono::milliseconds(1))) {
          node::v1::ContainerEvent event;
          if (event.ParseFromString(message.Data()) && subjects::PublishedBy(message.Subject(), event.node_id())) {
            service.HandleSandboxEvent(event);
          }
          message.Ack();
        }
        for (auto& task : inbox.Take()) task();
        if (std::chrono::steady_clock::now() >= next_gauges) {
          // Node states and requested capacity, as the loop sees them (the service is one actor).
          std::map<std::string, int> by_state{{"Ready", 0}, {"Cordoned", 0}, {"Draining", 0}, {"Lost", 0}};
          double requested = 0, capacity = 0;
          const auto known = service.Nodes();  // kept: ranging over a temporary's member dangles
          for (const auto& node : known.nodes()) {
            ++by_state[node.state()];
            requested += node.cpu_requested();
            capacity += node.cpu_capacity();
          }
          for (const auto& [state, count] : by_state) {
            registry.GetGauge("skiff_scheduler_nodes", "Nodes, by state.", {{"state", state}}).Set(count);
          }
          registry.GetGauge("skiff_scheduler_cpu_requested", "CPU reserved on the nodes.").Set(requested);
          registry.GetGauge("skiff_scheduler_cpu_capacity", "CPU the nodes have.").Set(capacity);
          next_gauges = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        }
        if (std::chrono::steady_clock::now() >= next_tick) {
          service.Tick();
          next_tick = std::chrono::steady_clock::now() + tick_every;
        }
      } catch (const std::exception& e) {
        spdlog::error("scheduling loop: {}", e.what());
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    }
  });
  spdlog::info("scheduler placing groups ({} strategy)", cfg.GetString("scheduler.strategy", "binpack"));
  int signal = termination.Wait();
  spdlog::info("signal {}: shutting down", signal);
  stopping = true;
  loop.join();
  admin.reset();
  heartbeats.reset();
  relay.Stop();
  commands.Stop();
  bus.Drain(std::chrono::seconds(5));
  return 0;
}

}  // namespace

// Operator commands: ask a running scheduler over NATS (skiff.scheduler.<verb>).
int Admin(const config::Config& cfg, const std::string& verb, const std::string& node_id) {
  bus::NatsBus bus(bus::ConnectOptionsFrom(cfg, "skiff-scheduler-admin"));
  scheduler::v1::NodeAdminRequest request;
  request.set_node_id(node_id);
  auto answer = bus.Request("skiff.scheduler." + verb, request.SerializeAsString(), std::chrono::seconds(60));
  if (!answer) {
    std::cerr << "no scheduler answered on skiff.scheduler." << verb << "\n";
    return 1;
  }
  if (verb == "nodes") {
    scheduler::v1::NodesReply reply;
    reply.ParseFromString(*answer);
    std::printf("%-24s %-6s %-9s %12s %14s %6s\n", "NODE", "ZONE", "STATE", "CPU", "MEMORY GB", "GROUPS");
    for (const auto& node : reply.nodes()) {
      std::printf("%-24s %-6s %-9s %5.2f/%-6.2f %6.1f/%-7.1f %6d\n", node.node_id().c_str(), node.zone().c_str(),
                  node.state().c_str(), node.cpu_requested(), node.cpu_capacity(), node.memory_gb_requested(),
                  node.memory_gb_capacity(), node.groups());
    }
    return 0;
  }
  scheduler::v1::NodeAdminReply reply;
  reply.ParseFromString(*answer);
  if (!reply.ok()) {
    std::cerr << reply.error_code() << ": " << reply.error_message() << "\n";
    return 1;
  }
  std::cout << verb << " " << node_id;
  if (verb == "drain") std::cout << ": " << reply.moved_groups() << " groups moved";
  std::cout << "\n";
  return 0;
}

int main(int argc, char** argv) {
  CLI::App app{"skiff-scheduler: places Skiff container groups on nodes"};
  std::string config_file, node_id;
  app.add_option("-c,--config", config_file, "INI config file (SKIFF_* environment variables override it)");
  app.require_subcommand(0, 1);
  app.add_subcommand("serve", "Place groups (the default)");
  app.add_subcommand("nodes", "List the nodes a running scheduler knows");
  for (const auto& [verb, help] : std::vector<std::pair<std::string, std::string>>{
           {"cordon", "Place nothing new on a node"},
           {"uncordon", "Make a cordoned or draining node usable again"},
           {"drain", "Cordon a node and move its groups to other nodes"}}) {
    app.add_subcommand(verb, help)->add_option("node", node_id, "node id")->required();
  }
  CLI11_PARSE(app, argc, argv);
  try {
    config::Config cfg = config_file.empty() ? config::Config() : config::Config::FromFile(config_file);
    log::Init("scheduler", cfg.GetString("log.level", "info"));
    if (!app.get_subcommands().empty() && app.get_subcommands().front()->get_name() != "serve") {
      return Admin(cfg, app.get_subcommands().front()->get_name(), node_id);
    }
    return Serve(cfg);
  } catch (const std::exception& e) {
    std::cerr << "skiff-scheduler: " << e.what() << "\n";
    return 1;
  }
}
