// skiff-cost-ticker: an example subscriber to Skiff's public usage stream, written against the
// plain NATS C client (any NATS client in any language works the same way).
//   skiff.usage.live      core NATS, every few seconds: running groups and cost so far
//   skiff.usage.interval  JetStream stream SKIFF_USAGE: every billed interval, kept; --replay
//                          reads them from the start of the stream, then follows new ones
// Usage: skiff-cost-ticker [nats-url] [--replay] [--subscription ID]
#include <nats/nats.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "skiff/billing/v1/billing.pb.h"

namespace {

std::string only_subscription;

void OnLive(natsConnection*, natsSubscription*, natsMsg* msg, void*) {
  skiff::billing::v1::LiveCost live;
  if (live.ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg))) {
    for (const auto& s : live.subscriptions()) {
      if (!only_subscription.empty() && s.subscription_id() != only_subscription) continue;
      std::printf("live  %s  running %3d  so far %12.6f %s  now %10.6f %s/h\n", s.subscription_id().c_str(),
                  s.running_groups(), s.cost_so_far(), s.currency().c_str(), s.cost_per_hour(), s.currency().c_str());
    }
    std::fflush(stdout);
  }
  natsMsg_Destroy(msg);
}

void OnInterval(natsConnection*, natsSubscription*, natsMsg* msg, void*) {
  skiff::billing::v1::UsageRecord record;
  if (record.ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg)) &&
      (only_subscription.empty() || record.group().subscription_id() == only_subscription)) {
    std::printf("bill  %s/%s  %9.3f s  %6.2f vCPU  %6.2f GB  %-7s  %12.9f %s  (%s, events %s..%s)\n",
                record.group().resource_group().c_str(), record.group().name().c_str(), record.seconds(), record.vcpu(),
                record.memory_gb(), record.priority().c_str(), record.cost(), record.currency().c_str(),
                record.end_reason().c_str(), record.start_event_id().c_str(), record.end_event_id().c_str());
    std::fflush(stdout);
  }
  natsMsg_Ack(msg, nullptr);
  natsMsg_Destroy(msg);
}

}  // namespace

int main(int argc, char** argv) {
  std::string url = "nats://127.0.0.1:4222";
  bool replay = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--replay") == 0) {
      replay = true;
    } else if (std::strcmp(argv[i], "--subscription") == 0 && i + 1 < argc) {
      only_subscription = argv[++i];
    } else if (argv[i][0] != '-') {
      url = argv[i];
    } else {
      std::fprintf(stderr, "usage: %s [nats-url] [--replay] [--subscription ID]\n", argv[0]);
      return 2;
    }
  }
  natsConnection* conn = nullptr;
  if (natsConnection_ConnectTo(&conn, url.c_str()) != NATS_OK) {
    std::fprintf(stderr, "cannot connect to %s: %s\n", url.c_str(), nats_GetLastError(nullptr));
    return 1;
  }
  std::printf("following Skiff usage on %s (Ctrl-C stops)\n", url.c_str());
  std::fflush(stdout);
  natsSubscription* live = nullptr;
  natsSubscription* intervals = nullptr;
  natsStatus status = natsConnection_Subscribe(&live, conn, "skiff.usage.live", OnLive, nullptr);
  jsCtx* js = nullptr;
  if (status == NATS_OK) status = natsConnection_JetStream(&js, conn, nullptr);
  if (status == NATS_OK) {
    // An ephemeral consumer: from the first record with --replay, otherwise from new ones.
    jsSubOptions options;
    jsSubOptions_Init(&options);
    options.Stream = "SKIFF_USAGE";
    options.Config.DeliverPolicy = replay ? js_DeliverAll : js_DeliverNew;
    status = js_Subscribe(&intervals, js, "skiff.usage.interval", OnInterval, nullptr, nullptr, &options, nullptr);
  }
  if (status != NATS_OK) {
    std::fprintf(stderr, "cannot subscribe: %s (is skiff-billing running?)\n", natsStatus_GetText(status));
    return 1;
  }
  for (;;) nats_Sleep(1000);
}
