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
#include "skiff/store/statement.h"

namespace skiff::store {

class ConnectionPool;

// Publishes `batch` in order (EventPublisher::PublishAll: pipelined by NatsBus, which waits for
// every ack); a failure keeps order: what follows it is not counted as sent. A duplicate ack
// counts as published (JetStream already holds that event id). Returns how many leading
// entries are now on the stream.
size_t PublishInOrder(const std::vector<OutboxEntry>& batch, bus::EventPublisher& publisher, std::string* error);

// A thread that runs RunOnce() when woken, every poll interval, and again at once while a pass
// filled its batch (more is waiting). Passes start at least `min_gap` apart, so a stream of
// wake-ups under load is gathered into fuller batches (each pass costs a transaction and a WAL
// flush) at the price of that much latency. Stop() runs one last pass. A subclass calls Stop()
// in its own destructor, before its members go.
class RelayLoop {
 public:
  RelayLoop(std::string name, int batch_size, std::chrono::milliseconds poll_interval,
            std::chrono::milliseconds min_gap = std::chrono::milliseconds(0));
  virtual ~RelayLoop();
  RelayLoop(const RelayLoop&) = delete;
  RelayLoop& operator=(const RelayLoop&) = delete;

  void Start();
  // Wake the relay now (a transaction just committed something to publish).
  void Notify();
  void Stop();
  // One pass; returns how many entries were published. Public for tests and tools.
  virtual size_t RunOnce() = 0;

 private:
  void Loop();

  std::string name_;
  int batch_size_;
  std::chrono::milliseconds poll_interval_;
  std::chrono::milliseconds min_gap_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool pending_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

// Moves the outbox to JetStream: one relay at a time per schema (advisory lock), in sequence
// order, deleting rows only after JetStream's ack. A crash between ack and delete makes
// the next relay publish again with the same Nats-Msg-Id, which the stream drops as duplicate,
// so each event lands once.
class OutboxRelay : public RelayLoop {
 public:
  struct Options {
    std::string schema;
    int batch_size = 200;
    std::chrono::milliseconds poll_interval{200};
    std::chrono::milliseconds min_gap{2};
  };

  OutboxRelay(ConnectionPool& pool, bus::EventPublisher& publisher, Options options);
  ~OutboxRelay() override;

  size_t RunOnce() override;

 private:
  ConnectionPool& pool_;
  bus::EventPublisher& publisher_;
  Options options_;
  Statement unpublished_;  // prepared per connection: the schema is part of the text
  Statement published_;
};

}  // namespace skiff::store
