#include "skiff/lifecycle/termination_signals.h"

#include <pthread.h>

namespace skiff::lifecycle {

TerminationSignals::TerminationSignals() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

int TerminationSignals::Wait() {
  int signal = 0;
  sigwait(&signals_, &signal);
  return signal;
}

int TerminationSignals::WaitFor(std::chrono::milliseconds timeout) {
  timespec wait{};
  wait.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  wait.tv_nsec = static_cast<long>(timeout.count() % 1000) * 1'000'000;
  const int signal = sigtimedwait(&signals_, nullptr, &wait);
  return signal > 0 ? signal : 0;
}

}  // namespace skiff::lifecycle
