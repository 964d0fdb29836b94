#pragma once
// An OCI seccomp profile compiled once to the raw BPF program the kernel loads, with libseccomp
// as runc and crun compile it. A microVM's guest runtime (crun) takes it through the
// `run.oci.seccomp_bpf_data` annotation instead of compiling the profile again at every
// container start, which under TCG costs ~85 ms of each start.
#include <optional>
#include <string>

#include "skiff/node/v1/runtime_spec.pb.h"

namespace skiff::node {

// The program (struct sock_filter[]) as bytes; nullopt with `error` for a profile libseccomp
// rejects (an unknown action, architecture or comparison).
std::optional<std::string> CompileSeccompBpf(const v1::Seccomp& profile, std::string* error);

// crun's annotation that loads a precompiled program instead of the spec's seccomp section.
inline constexpr const char* kSeccompBpfAnnotation = "run.oci.seccomp_bpf_data";

}  // namespace skiff::node
