// Billing throughput and lag, against real NATS JetStream and Postgres (bench/billing_e2e
// starts them). In one process:
//   1. publishes N lifecycle events for G groups (created, then start/stop pairs) to SKIFF_EVENTS;
//   2. reference: a pull consumer that fetches and acks them in batches, doing nothing else
//      (the transport's floor);
//   3. billing: a pull consumer that meters them as skiff-billing does (BillingService +
//      PgBillingStore: dedupe, meters, priced intervals, hourly rollup), committing a checkpoint
//      every C events (and when the stream is drained) and acking the events after it commits;
//   4. lag: G groups left running, a steady stream of events at R/s for S seconds while the
//      billing loop runs; the lag of each batch (commit time - the newest event's stream time).
// Prints events/s for 2 and 3, their ratio, the usage relay's records/s, and lag p50/p99.
// Usage: billing_bench STORE_URL NATS_URL [events=200000] [groups=1000] [batch=1000] [rate=2000] [seconds=10]
//        [commit shards=2] [checkpoint events=10000]
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "skiff/billing/billing_service.h"
#include "skiff/billing/pg_billing_store.h"
#include "skiff/bus/nats_bus.h"
#include "skiff/crypto/crypto.h"
#include "skiff/events/v1/group_events.pb.h"
#include "skiff/store/migrations.h"
#include "skiff/store/pool.h"

using namespace skiff;
using Clock = std::chrono::steady_clock;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Created(const std::string& group_id, int64_t at_ms) {
  events::v1::GroupEvent event;
  event.set_event_id(crypto::NewUuid());
  *event.mutable_occurred_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(at_ms);
  auto* ref = event.mutable_group();
  ref->set_subscription_id("bench-sub-" + std::to_string(group_id.back() % 10));
  ref->set_resource_group("rg");
  ref->set_name("g-" + group_id.substr(0, 8));
  ref->set_group_id(group_id);
  auto* requests = event.mutable_created()->mutable_spec()->mutable_properties()->add_containers()
                       ->mutable_properties()->mutable_resources()->mutable_requests();
  requests->set_cpu(1);
  requests->set_memory_in_gb(1.5);
  return event.SerializeAsString();
}

std::string State(const std::string& group_id, int64_t at_ms, const std::string& state) {
  node::v1::ContainerEvent event;
  event.set_event_id(crypto::NewUuid());
  *event.mutable_occurred_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(at_ms);
  event.mutable_group()->set_group_id(group_id);
  event.set_node_id("bench-node");
  event.set_placement_generation(1);
  event.set_group_state(state);
  event.set_name("StateChanged");
  return event.SerializeAsString();
}

struct Message {
  std::string subject, payload;
};

// `per_group` events per group: created, then Running/Stopped alternating (ending Running).
std::vector<Message> Workload(const std::vector<std::string>& groups, int per_group, int64_t base_ms) {
  std::vector<Message> out;
  for (int step = 0; step < per_group; ++step) {
    for (size_t g = 0; g < groups.size(); ++g) {
      const int64_t at = base_ms + step * 1000 + static_cast<int64_t>(g);
      if (step == 0) out.push_back({"skiff.events.group.created", Created(groups[g], at)});
      else out.push_back({"skiff.events.sandbox.state.bench-node", State(groups[g], at, step % 2 == 1 ? "Running" : "Stopped")});
    }
  }
  return out;
}

void PublishAll(bus::NatsBus& bus, const std::vector<Message>& messages) {
  // Synchronous JetStream publishes on a few threads: each must be stored before it counts.
  const int threads = 8;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < messages.size(); i += threads) {
        bus.Publish(messages[i].subject, crypto::NewUuid(), messages[i].payload);
      }
    });
  }
  for (auto& w : workers) w.join();
}

// Fetches until `expected` messages came; `handle` meters a batch, `flush` (at least every
// `flush_every` messages and at the end) commits; the held messages are acked after it.
double Drain(bus::PullConsumer& consumer, size_t expected, int batch,
             const std::function<void(std::vector<bus::ReceivedMessage>&)>& handle, const std::function<void()>& flush,
             size_t flush_every, size_t prefetch_depth) {
  size_t seen = 0;
  const auto start = Clock::now();
  Clock::duration fetching{}, handling{}, flushing{}, acking{};
  std::vector<bus::ReceivedMessage> held;
  bus::Prefetcher prefetch(consumer, batch, prefetch_depth);  // as skiff-billing fetches
  while (seen < expected) {
    auto t0 = Clock::now();
    auto messages = prefetch.Next(std::chrono::milliseconds(1000));
    auto t1 = Clock::now();
    fetching += t1 - t0;
    if (messages.empty()) break;
    handle(messages);
    seen += messages.size();
    for (auto& m : messages) held.push_back(std::move(m));
    auto t2 = Clock::now();
    handling += t2 - t1;
    if (held.size() >= flush_every || seen >= expected) {
      flush();
      auto t3 = Clock::now();
      for (auto& m : held) m.Ack();
      held.clear();
      flushing += t3 - t2;
      acking += Clock::now() - t3;
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("  time: waiting for fetch %.0f ms, meter %.0f ms, commit %.0f ms, ack %.0f ms\n", ms(fetching), ms(handling),
              ms(flushing), ms(acking));
  if (seen < expected) std::fprintf(stderr, "only %zu of %zu events arrived\n", seen, expected);
  return static_cast<double>(seen) / seconds;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s STORE_URL NATS_URL [events] [groups] [batch] [rate] [seconds]\n", argv[0]);
    return 2;
  }
  const size_t events = argc > 3 ? std::stoul(argv[3]) : 200000;
  const size_t group_count = argc > 4 ? std::stoul(argv[4]) : 1000;
  const int batch = argc > 5 ? std::stoi(argv[5]) : 1000;
  const int rate = argc > 6 ? std::stoi(argv[6]) : 2000;
  const int seconds = argc > 7 ? std::stoi(argv[7]) : 10;
  const int shards = argc > 8 ? std::stoi(argv[8]) : 2;
  const size_t checkpoint_events = argc > 9 ? std::stoul(argv[9]) : 10000;

  store::ConnectionPool pool(argv[1], static_cast<size_t>(std::max(2, shards)));
  {
    auto conn = pool.Acquire();
    store::ApplyMigrations(*conn, billing::kBillingSchema, billing::BillingMigrations());
  }
  bus::NatsBus bus(argv[2], "billing-bench");
  bus.EnsureStream({"SKIFF_EVENTS", {"skiff.events.>"}, std::chrono::seconds(120), true});
  bus.EnsureStream({"SKIFF_USAGE", {"skiff.usage.interval"}, std::chrono::seconds(120), true});
  std::vector<std::string> groups;
  for (size_t i = 0; i < group_count; ++i) groups.push_back(crypto::NewUuid());
  int per_group = static_cast<int>(events / group_count);
  if (per_group % 2 == 1) ++per_group;  // created + pairs + a final start: groups end running
  auto workload = Workload(groups, per_group, NowMs() - 3'600'000);
  auto publish_start = Clock::now();
  PublishAll(bus, workload);
  std::printf("published %zu events for %zu groups in %.1f s\n", workload.size(), group_count,
              std::chrono::duration<double>(Clock::now() - publish_start).count());

  // As skiff-billing: fetch a checkpoint's worth ahead while one commits.
  const size_t prefetch_depth = std::max<size_t>(2, checkpoint_events / static_cast<size_t>(batch));
  const int max_ack_pending = static_cast<int>(checkpoint_events + (prefetch_depth + 1) * static_cast<size_t>(batch));
  auto reference = bus.PullSubscribe("SKIFF_EVENTS", "skiff.events.>", "bench-reference", max_ack_pending);
  const double reference_rate = Drain(*reference, workload.size(), batch, [](auto&) {}, [] {}, 1, prefetch_depth);

  billing::PgBillingStore store(pool, nullptr);
  billing::BillingOptions options;
  options.commit_shards = shards;  // billing's default
  billing::BillingService service(store, billing::PriceSheet("USD", {{0, {0.0000135, 0.0000015, 0}, {}}}),
                                  billing::Meter(), options, NowMs);
  service.Start();
  auto consumer = bus.PullSubscribe("SKIFF_EVENTS", "skiff.events.>", "bench-billing", max_ack_pending);
  size_t closed = 0;
  const double billing_rate = Drain(
      *consumer, workload.size(), batch,
      [&](std::vector<bus::ReceivedMessage>& messages) {
        std::vector<billing::InboundEvent> inbound;
        inbound.reserve(messages.size());
        for (auto& m : messages) inbound.push_back({m.Subject(), m.Data()});
        service.Apply(inbound);
      },
      [&] { closed += static_cast<size_t>(service.Commit()); }, checkpoint_events, prefetch_depth);
  std::printf("reference (fetch + ack only): %.0f events/s\n", reference_rate);
  std::printf("billing (meter + checkpoint every %zu + ack): %.0f events/s, %zu intervals closed, %zu groups open\n",
              checkpoint_events, billing_rate, closed, service.open_groups());
  std::printf("ratio billing/reference: %.2f\n", billing_rate / reference_rate);

  // The usage relay (its own thread in skiff-billing): every closed interval's record to SKIFF_USAGE.
  const auto relay_start = Clock::now();
  size_t relayed = 0;
  for (size_t n; (n = store.PublishUsage(bus, "USD", 2000)) > 0;) relayed += n;
  const double relay_seconds = std::chrono::duration<double>(Clock::now() - relay_start).count();
  std::printf("usage relay: %zu records published in %.1f s, %.0f records/s\n", relayed, relay_seconds,
              static_cast<double>(relayed) / relay_seconds);

  // Lag: a steady stream over the running groups while the loop meters it.
  std::atomic<bool> done{false};
  std::thread producer([&] {
    const auto start = Clock::now();
    size_t sent = 0;
    bool running = false;  // every group is Running now: stop them all, then start them all, ...
    while (Clock::now() - start < std::chrono::seconds(seconds)) {
      const size_t due = static_cast<size_t>(std::chrono::duration<double>(Clock::now() - start).count() * rate);
      for (; sent < due; ++sent) {
        if (sent % groups.size() == 0) running = !running;
        bus.Publish("skiff.events.sandbox.state.bench-node", crypto::NewUuid(),
                    State(groups[sent % groups.size()], NowMs(), running ? "Stopped" : "Running"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    done = true;
  });
  std::vector<double> lags;
  size_t metered = 0;
  while (!done) {
    auto messages = consumer->Fetch(batch, std::chrono::milliseconds(100));
    if (messages.empty()) continue;
    std::vector<billing::InboundEvent> inbound;
    for (auto& m : messages) inbound.push_back({m.Subject(), m.Data()});
    service.HandleBatch(inbound);  // the stream keeps up: skiff-billing checkpoints each batch
    for (auto& m : messages) m.Ack();
    metered += messages.size();
    if (auto position = messages.back().Position()) {
      lags.push_back(static_cast<double>(NowMs() - position->stored_at_ns / 1'000'000));
    }
  }
  producer.join();
  std::printf("lag at %d events/s over %zu running groups, %d s: %zu events metered in %zu batches, "
              "p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
              rate, groups.size(), seconds, metered, lags.size(), Percentile(lags, 0.5), Percentile(lags, 0.99),
              Percentile(lags, 1.0));
  bus.Drain(std::chrono::seconds(2));
  return 0;
}
