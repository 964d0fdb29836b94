// Google Benchmark: setting a group's sandbox up (directories, network namespace, hosts and
// resolv.conf) against claiming a spare from the standby pool, with the runc runtime. Needs root.
//   build/ci/bench/sandbox_bench
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>

#include "skiff/crypto/crypto.h"
#include "skiff/node/sandbox_runtime.h"

namespace {

using namespace skiff::node;

RuncRuntime& Runtime() {
  static RuncRuntime runtime([] {
    RuncRuntimeOptions options;
    options.root = "/tmp/skiff-sandbox-bench";
    options.host_tag = "skiff-bench";
    return options;
  }());
  return runtime;
}

skiff::node::SandboxSpec Spec(const std::string& id) {
  skiff::node::SandboxSpec spec;
  spec.id = id;
  spec.hostname = "bench";
  return spec;
}

void BM_CreateSandbox(benchmark::State& state) {
  for (auto _ : state) {
    const std::string id = skiff::crypto::NewUuid();
    if (auto error = Runtime().CreateSandbox(Spec(id))) state.SkipWithError(error->c_str());
    state.PauseTiming();
    Runtime().DeleteSandbox(id);
    state.ResumeTiming();
  }
}

void BM_ClaimSpare(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    const std::string spare = "standby-" + skiff::crypto::NewUuid(), id = skiff::crypto::NewUuid();
    if (auto error = Runtime().CreateSpare(spare)) state.SkipWithError(error->c_str());
    state.ResumeTiming();
    if (auto error = Runtime().ClaimSpare(spare, Spec(id))) state.SkipWithError(error->c_str());
    state.PauseTiming();
    Runtime().DeleteSandbox(id);
    state.ResumeTiming();
  }
}

BENCHMARK(BM_CreateSandbox)->Unit(benchmark::kMicrosecond)->Iterations(200);
BENCHMARK(BM_ClaimSpare)->Unit(benchmark::kMicrosecond)->Iterations(200);

}  // namespace

BENCHMARK_MAIN();
