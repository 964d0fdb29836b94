// libFuzzer: a hostile PUT body through the ARM JSON codec and the group validation, as the
// gateway runs them (parse, validate and normalise, isolation policy, back to JSON); tags
// patches and exec requests too. Nothing may crash, leak or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string>

#include "skiff/containerinstance/v1/container_group.pb.h"
#include "skiff/gateway/group_codec.h"
#include "skiff/gateway/validation.h"

namespace ci = skiff::containerinstance::v1;
using namespace skiff::gateway;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  auto parsed = ParseGroupJson(body);
  if (auto* group = std::get_if<ci::ContainerGroup>(&parsed)) {
    ValidationLimits limits;
    limits.reserved_ports = {10250, 10255};
    limits.git_insecure_hosts = {"git.example.test:8080"};
    limits.microvm_subscriptions = {"strict"};
    if (!ValidateAndNormalize(*group, limits) && !ApplyIsolationPolicy(*group, "strict", limits)) {
      RedactSecrets(*group);
      (void)ToJson(*group);
      (void)RequestedCores(*group);
    }
  }
  (void)ParseTagsPatchJson(body);
  (void)ParseExecRequestJson(body);
  return 0;
}
