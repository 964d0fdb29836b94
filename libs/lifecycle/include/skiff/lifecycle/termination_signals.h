#pragma once

#include <chrono>
#include <csignal>

namespace skiff::lifecycle {

// SIGINT and SIGTERM, taken synchronously: construct it in main() before any thread starts (so
// every thread inherits the blocked mask), then Wait() where the service should begin its
// orderly shutdown.
class TerminationSignals {
 public:
  TerminationSignals();
  // Blocks until SIGINT or SIGTERM arrives; returns which.
  int Wait();
  // As Wait(), for at most `timeout`; 0 if none came.
  int WaitFor(std::chrono::milliseconds timeout);

 private:
  sigset_t signals_;
};

}  // namespace skiff::lifecycle
