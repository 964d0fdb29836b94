// skiff-billing: meters container groups by the second from the lifecycle events on JetStream,
// publishes a usage record for every billed interval, and answers cost queries.

#include <atomic>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include <signal.h>
#include <unistd.h>

#include "skiff/billing/billing_service.h"
#include "skiff/billing/pg_billing_store.h"
#include "skiff/bus/bus_config.h"
#include "skiff/bus/nats_bus.h"
#include "skiff/bus/subjects.h"
#include "skiff/config/config.h"
#include "skiff/lifecycle/loop_inbox.h"
#include "skiff/lifecycle/service_main.h"
#include "skiff/lifecycle/termination_signals.h"
#include "skiff/log/log.h"
#include "skiff/metrics/metrics.h"
#include "skiff/store/migrations.h"
#include "skiff/store/outbox_relay.h"
#include "skiff/store/pool.h"

namespace {

using namespace skiff;

billing::Millis NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// List prices in the shape of ACI's Linux rates; a price sheet file replaces them.
billing::PriceSheet LoadPrices(const config::Config& cfg) {
  const std::string currency = cfg.GetString("billing.currency", "USD");
  if (auto path = cfg.Find("billing.price_sheet"); path && !path->empty()) {
    std::ifstream in(*path);
    if (!in) throw std::runtime_error("cannot read billing.price_sheet " + *path);
    std::stringstream text;
    text << in.rdbuf();
    return billing::PriceSheet::Parse(currency, text.str());
  }
  billing::PriceVersion version;
  version.regular = {cfg.GetDouble("billing.regular.vcpu_second", 0.0000135),
                     cfg.GetDouble("billing.regular.gb_second", 0.0000015),
                     cfg.GetDouble("billing.regular.gpu_second", 0.0003)};
  version.spot = {cfg.GetDouble("billing.spot.vcpu_second", 0.00000405),
                  cfg.GetDouble("billing.spot.gb_second", 0.00000045),
                  cfg.GetDouble("billing.spot.gpu_second", 0.00009)};
  return billing::PriceSheet(currency, {version});
}

int Serve(const config::Config& cfg) {
  lifecycle::TerminationSignals termination;  // before any thread starts
  auto& registry = metrics::DefaultRegistry();
  metrics::MetricsServer metrics_server(cfg.GetString("metrics.listen", "127.0.0.1:9105"), registry);
  if (!metrics_server.error().empty()) spdlog::warn("no /metrics: {}", metrics_server.error());
  store::ConnectionPool pool(cfg.Require("store.url"), static_cast<size_t>(cfg.GetInt("store.pool_size", 3)));
  {
    auto conn = pool.Acquire();
    store::ApplyMigrations(*conn, billing::kBillingSchema, billing::BillingMigrations());
  }
  // Billing meters in memory: one process at a time, the others wait as standbys.
  store::ExclusiveLock leader(cfg.Require("store.url"), "skiff.billing");
  for (bool first = true; !leader.TryAcquire(); first = false) {
    if (first) spdlog::info("another billing is active: standing by");
    if (termination.WaitFor(std::chrono::seconds(2))) return 0;
  }
  bus::NatsBus bus(bus::ConnectOptionsFrom(cfg, "skiff-billing"));
  bus.EnsureStream({"SKIFF_EVENTS", {"skiff.events.>"}, std::chrono::seconds(120), true});
  bus.EnsureStream({"SKIFF_USAGE", {"skiff.usage.interval"}, std::chrono::seconds(120), true});
  // Drains usage records written to the outbox before billing published them from the intervals.
  store::OutboxRelay legacy_relay(pool, bus, {billing::kBillingSchema, 500, std::chrono::milliseconds(1000)});
  std::unique_ptr<billing::UsageRelay> relay;
  billing::PgBillingStore store(pool, [&relay] {
    if (relay) relay->Notify();
  });
  billing::MeterOptions meter_options;
  meter_options.bill_from_pull = cfg.GetString("billing.start_at", "container_start") == "image_pull";
  meter_options.max_future_skew = cfg.GetInt("billing.max_future_skew_ms", 5000);
  billing::BillingOptions options;
  options.heartbeat_grace = cfg.GetInt("billing.heartbeat_grace_ms", 2000);
  options.missing_for = cfg.GetInt("billing.missing_for_ms", 30000);
  options.node_lost_after = cfg.GetInt("billing.node_lost_after_ms", 30000);
  options.commit_shards = static_cast<int>(cfg.GetInt("billing.commit_shards", 2));
  options.dedupe_window = cfg.GetInt("billing.dedupe_hours", 24) * 3'600'000;
  billing::BillingService service(store, LoadPrices(cfg), billing::Meter(meter_options), options, NowMillis);
  service.Start();
  relay = std::make_unique<billing::UsageRelay>(store, bus, service.prices().currency());
  relay->Start();
  legacy_relay.Start();

  auto& applied = registry.GetCounter("skiff_billing_events_total", "Lifecycle events consumed, by result.",
                                      {{"result", "applied"}});
  auto& duplicates = registry.GetCounter("skiff_billing_events_total", "", {{"result", "duplicate"}});
  auto& ignored = registry.GetCounter("skiff_billing_events_total", "", {{"result", "ignored"}});
  auto& closed = registry.GetCounter("skiff_billing_intervals_closed_total", "Billed intervals closed.");
  auto& reconciled = registry.GetCounter("skiff_billing_reconciled_total",
                                         "Intervals closed from heartbeat evidence because their stop never came.");
  auto& lag_messages = registry.GetGauge("skiff_billing_lag_messages", "Events on the stream not yet metered.");
  auto& lag_seconds = registry.GetGauge("skiff_billing_lag_seconds",
                                        "Age of the newest event metered when it was committed.");
  auto& open_groups = registry.GetGauge("skiff_billing_open_groups", "Groups being billed now.");
  auto& commit_seconds = registry.GetHistogram("skiff_billing_commit_seconds", "Time to meter and commit one batch.");
  auto& failures = registry.GetCounter("skiff_billing_batch_failures_total", "Batches that failed and came again.");

  lifecycle::LoopInbox inbox;
  auto heartbeats = bus.Subscribe(std::string(subjects::kEveryHeartbeat), [&](const std::string& subject, const std::string& data) {
    node::v1::NodeHeartbeat heartbeat;
    if (!heartbeat.ParseFromString(data) || !subjects::PublishedBy(subject, heartbeat.node_id())) return;
    inbox.Post([&service, heartbeat] { service.HandleHeartbeat(heartbeat); });
  });
  auto queries = bus.Serve(
      "skiff.billing.costs", "billing",
      [&](const std::string&, const std::string& data) -> std::optional<std::string> {
        billing::v1::CostRequest request;
        if (!request.ParseFromString(data)) {
          billing::v1::CostReply reply;
          reply.set_error_code("InvalidRequest");
          reply.set_error_message("The cost request could not be read.");
          return reply.SerializeAsString();
        }
        auto answer = std::make_shared<std::promise<std::string>>();
        auto future = answer->get_future();
        inbox.Post([&service, request, answer] { answer->set_value(service.Costs(request).SerializeAsString()); });
        if (future.wait_for(std::chrono::seconds(20)) != std::future_status::ready) return std::nullopt;
        return future.get();
      },
      2);

  const int batch_size = static_cast<int>(cfg.GetInt("billing.batch", 1000));
  // Events are metered in memory batch by batch and acknowledged only once a checkpoint has
  // written their effects; a checkpoint comes every `checkpoint_events` events, every
  // `checkpoint_ms`, and whenever the stream has nothing more.
  const size_t checkpoint_events = static_cast<size_t>(cfg.GetInt("billing.checkpoint_events", 10000));
  const auto checkpoint_every = std::chrono::milliseconds(cfg.GetInt("billing.checkpoint_ms", 500));
  // A checkpoint's worth is fetched ahead while one commits.
  const size_t prefetch_depth = std::max<size_t>(2, checkpoint_events / static_cast<size_t>(batch_size));
  auto consumer = bus.PullSubscribe("SKIFF_EVENTS", "skiff.events.>", cfg.GetString("billing.consumer", "billing"),
                                    static_cast<int>(checkpoint_events + (prefetch_depth + 1) * static_cast<size_t>(batch_size)));
  auto prefetch = std::make_unique<bus::Prefetcher>(*consumer, batch_size, prefetch_depth);
  const auto tick_every = std::chrono::milliseconds(cfg.GetInt("billing.tick_ms", 1000));
  const auto live_every = std::chrono::milliseconds(cfg.GetInt("billing.live_ms", 5000));
  std::atomic<bool> stopping{false};
  bool lost_lock = false;  // the loop's own
  std::thread loop([&] {
    auto next_tick = std::chrono::steady_clock::now();
    auto next_live = next_tick;
    auto next_prune = next_tick + std::chrono::minutes(1);
    bool caught_up = false;
    std::vector<bus::ReceivedMessage> held;  // metered, not yet checkpointed: not acknowledged
    auto held_since = std::chrono::steady_clock::now();
    std::optional<bus::ReceivedMessage::StreamPosition> position;
    billing::BatchStats held_stats;  // counted once their checkpoint commits (a failed one comes again)
    auto checkpoint = [&] {
      const auto started = std::chrono::steady_clock::now();
      try {
        closed.Add(service.Commit());
        for (auto& message : held) message.Ack();
        applied.Add(held_stats.applied);
        duplicates.Add(held_stats.duplicates);
        ignored.Add(held_stats.events - held_stats.applied - held_stats.duplicates);
        commit_seconds.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        if (position) {
          lag_messages.Set(static_cast<double>(position->pending));
          lag_seconds.Set(static_cast<double>(NowMillis() - position->stored_at_ns / 1'000'000) / 1000.0);
        }
      } catch (const std::exception& e) {
        failures.Add();
        spdlog::error("checkpoint of {} events failed, they come again: {}", held.size(), e.what());
        for (auto& message : held) message.Nak();
        caught_up = false;
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      held.clear();
      held_stats = {};
    };
    while (!stopping) {
      try {
        auto messages = prefetch->Next(std::chrono::milliseconds(200));
        if (!messages.empty()) {
          std::vector<billing::InboundEvent> batch;
          batch.reserve(messages.size());
          for (auto& message : messages) batch.push_back({message.Subject(), message.Data()});
          position = messages.back().Position();
          auto stats = service.Apply(batch);
          held_stats.events += stats.events;
          held_stats.applied += stats.applied;
          held_stats.duplicates += stats.duplicates;
          if (held.empty()) held_since = std::chrono::steady_clock::now();
          for (auto& message : messages) held.push_back(std::move(message));
          caught_up = position && position->pending == 0;
        } else {
          caught_up = true;
          lag_messages.Set(0);
          lag_seconds.Set(0);
        }
        if (!held.empty() && (caught_up || held.size() >= checkpoint_events ||
                              std::chrono::steady_clock::now() - held_since >= checkpoint_every)) {
          checkpoint();
        }
        for (auto& task : inbox.Take()) task();
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_tick && held.empty()) {  // a tick commits: with nothing staged
          if (!leader.StillHeld()) {
            // Another billing may be active now: commit nothing more.
            spdlog::critical("lost the billing lock's Postgres connection: stopping");
            lost_lock = true;
            ::kill(::getpid(), SIGTERM);
            break;
          }
          reconciled.Add(service.Tick(caught_up));
          open_groups.Set(static_cast<double>(service.open_groups()));
          next_tick = now + tick_every;
        }
        if (now >= next_live) {
          bus.PublishCore("skiff.usage.live", service.Live().SerializeAsString());
          next_live = now + live_every;
        }
        if (now >= next_prune) {
          store.PruneProcessed(options.dedupe_window);
          next_prune = now + std::chrono::hours(1);
        }
      } catch (const std::exception& e) {
        spdlog::error("billing loop: {}", e.what());
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    }
    if (!held.empty()) checkpoint();
  });
  spdlog::info("billing metering groups (from {}, {} open)", meter_options.bill_from_pull ? "image pull" : "container start",
               service.open_groups());
  int signal = termination.Wait();  // also raised by the loop when it loses the lock
  spdlog::info("signal {}: shutting down", signal);
  stopping = true;
  loop.join();
  prefetch.reset();  // gives back what it fetched ahead, while the connection is up
  queries.reset();
  heartbeats.reset();
  relay->Stop();
  legacy_relay.Stop();
  bus.Drain(std::chrono::seconds(5));
  return lost_lock ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return skiff::lifecycle::ServiceMain(argc, argv, "skiff-billing", "per-second metering of Skiff container groups", "billing", Serve);
}
