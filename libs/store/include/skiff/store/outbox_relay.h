#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "skiff/bus/event_publisher.h"
#include "skiff/store/outbox.h"

namespace skiff::store {

class ConnectionPool;

// Publishes `batch` in order; stops at the first failure so order is kept. A duplicate ack
// counts as published (JetStream already holds that event id). Returns how many leading
// entries are now on the stream.
size_t PublishInOrder(const std::vector<OutboxEntry>& batch, bus::EventPublisher& publisher, std::string* error);

// Moves the outbox to JetStream: one relay at a time per schema (advisory lock), in sequence
// order, marking rows published only after JetStream's ack. A crash between ack and mark makes
// the next relay publish again with the same Nats-Msg-Id, which the stream drops as duplicate,
// so each event lands once.
class OutboxRelay {
 public:
  struct Options {
    std::string schema;
    int batch_size = 200;
    std::chrono::milliseconds poll_interval{200};
  };

  OutboxRelay(ConnectionPool& pool, bus::EventPublisher& publisher, Options options);
  ~OutboxRelay();

  void Start();
  // Wake the relay now (a transaction just committed an event).
  void Notify();
  void Stop();

  // One pass; returns how many entries were published. Public for tests and tools.
  size_t RunOnce();

 private:
  void Loop();

  ConnectionPool& pool_;
  bus::EventPublisher& publisher_;
  Options options_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool pending_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace skiff::store
