// Network set-up and tear-down per group: Skiff's path (the node's `ip netns add`, then
// HostNetwork::Attach: claim lookup in Postgres, attachment records, CNI ADD, isolation rules;
// Detach and `ip netns del` back) against the reference of the same run: a bare `ip netns add`
// plus CNI ADD/DEL of the very same configuration list. Groups stay attached while more are
// added, so the numbers show how set-up grows from 10 to N groups on one host.
// Usage: network_bench <store url> [counts, e.g. 10,100,500]   (root; CNI plugins in /usr/lib/cni)
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "skiff/crypto/crypto.h"
#include "skiff/network/host_adapters.h"
#include "skiff/network/host_network.h"
#include "skiff/network/pg_network_store.h"
#include "skiff/network/registry.h"
#include "skiff/process/process.h"
#include "skiff/store/migrations.h"
#include "skiff/store/pool.h"

using namespace skiff;
using Clock = std::chrono::steady_clock;

namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void Must(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "network_bench: %s\n", what.c_str());
    std::exit(1);
  }
}

struct Phase {
  double setup_ms = 0, teardown_ms = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: network_bench <store url> [counts]\n");
    return 2;
  }
  std::vector<int> counts;
  std::stringstream list(argc > 2 ? argv[2] : "10,100,500");
  for (std::string item; std::getline(list, item, ',');) counts.push_back(std::stoi(item));

  store::ConnectionPool pool(argv[1], 2);
  {
    auto conn = pool.Acquire();
    store::ApplyMigrations(*conn, network::kNetworkSchema, network::NetworkMigrations());
  }
  network::PgNetworkStore store(pool);
  network::RegistryOptions registry_options;
  registry_options.default_pool = *network::Ipv4Prefix::Parse("10.253.0.0/16");
  registry_options.default_length = 22;
  network::Registry registry(store, registry_options, [] { return network::Millis{0}; });
  network::ExecCniRunner cni("/usr/lib/cni");
  network::HostNetworkOptions host_options;
  host_options.agent = "bench-" + crypto::NewUuid().substr(0, 8);
  network::IptablesPlumbing plumbing(host_options.agent);
  host_options.masquerade = false;
  network::HostNetwork host(store, cni, plumbing, host_options);

  // Claims alone (what a PUT waits for at the network service): one transaction each under the
  // allocation lock, 1,000 groups in one default network, then released.
  {
    const std::string claims_subscription = crypto::NewUuid();
    std::vector<std::string> claimed;
    auto started = Clock::now();
    for (int i = 0; i < 1000; ++i) {
      network::v1::ClaimRequest claim;
      claim.mutable_group()->set_group_id(crypto::NewUuid());
      claim.mutable_group()->set_subscription_id(claims_subscription);
      claim.mutable_group()->set_resource_group("bench");
      claim.mutable_group()->set_name("c" + std::to_string(i));
      claim.set_location("local");
      Must(registry.Claim(claim).ok(), "claim");
      claimed.push_back(claim.group().group_id());
    }
    const double ms = Ms(Clock::now() - started);
    std::printf("claims: %.0f/s, %.2f ms each (1,000 in one default network, sequential)\n", 1000 / (ms / 1000), ms / 1000);
    for (const auto& id : claimed) registry.Release(id);
  }
  const std::string subscription = crypto::NewUuid();
  std::printf("network set-up + tear-down per group (ms), same CNI configuration list in both paths\n");
  std::printf("%6s %14s %14s %14s %14s %8s\n", "groups", "ref setup", "skiff setup", "ref teardown", "skiff teardown",
              "ratio");
  int made = 0;
  for (int n : counts) {
    // Claims (not timed: the gateway makes them at PUT, before any node is involved).
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      network::v1::ClaimRequest claim;
      claim.mutable_group()->set_group_id(crypto::NewUuid());
      claim.mutable_group()->set_subscription_id(subscription);
      claim.mutable_group()->set_resource_group("bench");
      claim.mutable_group()->set_name("g" + std::to_string(made + i));
      claim.set_location("local");
      auto reply = registry.Claim(claim);
      Must(reply.ok(), "claim: " + reply.error_message());
      ids.push_back(claim.group().group_id());
    }
    made += n;
    std::vector<std::string> conflists;
    store.InTransaction([&](network::NetworkTx& tx) {
      for (const auto& id : ids) {
        auto claim = tx.FindClaim(id);
        conflists.push_back(network::HostNetwork::ConfList(*tx.FindSubnet(claim->subnet_id), *claim, false));
      }
    });

    // One phase: n namespaces set up (all kept up), then all torn down; the reference runs a
    // bare namespace + CNI ADD/DEL, Skiff its HostNetwork path.
    auto run = [&](bool through_skiff) {
      Phase phase;
      const std::string prefix = through_skiff ? "skb-sk-" : "skb-ref-";
      std::vector<std::string> results(n);  // ADD's results: DEL gets them, as a runtime does
      auto started = Clock::now();
      for (int i = 0; i < n; ++i) {
        const std::string ns = prefix + std::to_string(i);
        Must(process::RunProcess({"ip", "netns", "add", ns}).exit_code == 0, "ip netns add");
        if (through_skiff) {
          network::v1::AttachRequest attach;
          attach.mutable_group()->set_group_id(ids[i]);
          attach.set_netns_path("/var/run/netns/" + ns);
          attach.set_placement_generation(1);
          auto reply = host.Attach(attach);
          Must(reply.ok(), "attach: " + reply.error_message());
        } else {
          auto added = cni.Add(conflists[i], ns, "/var/run/netns/" + ns, "eth0");
          Must(added.ok, "reference CNI ADD: " + added.error);
          results[i] = added.result;
        }
      }
      phase.setup_ms = Ms(Clock::now() - started) / n;
      started = Clock::now();
      for (int i = 0; i < n; ++i) {
        const std::string ns = prefix + std::to_string(i);
        if (through_skiff) {
          network::v1::DetachRequest detach;
          detach.set_group_id(ids[i]);
          detach.set_netns_path("/var/run/netns/" + ns);
          Must(host.Detach(detach).ok(), "detach");
        } else {
          cni.Del(conflists[i], results[i], ns, "/var/run/netns/" + ns, "eth0");
        }
        process::RunProcess({"ip", "netns", "del", ns});
      }
      phase.teardown_ms = Ms(Clock::now() - started) / n;
      return phase;
    };
    // A B B A: drift in the host's rule sets or caches falls on both sides equally.
    Phase r1 = run(false), s1 = run(true), s2 = run(true), r2 = run(false);
    Phase reference{(r1.setup_ms + r2.setup_ms) / 2, (r1.teardown_ms + r2.teardown_ms) / 2};
    Phase skiff{(s1.setup_ms + s2.setup_ms) / 2, (s1.teardown_ms + s2.teardown_ms) / 2};
    for (const auto& id : ids) registry.Release(id);
    const double ratio = (skiff.setup_ms + skiff.teardown_ms) / (reference.setup_ms + reference.teardown_ms);
    std::printf("%6d %14.2f %14.2f %14.2f %14.2f %8.2f\n", n, reference.setup_ms, skiff.setup_ms, reference.teardown_ms,
                skiff.teardown_ms, ratio);
    std::fflush(stdout);
  }
  host.Reconcile();
  return 0;
}
