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

}  // namespace skiff::lifecycle
