#pragma once

#include <string>

namespace skiff::bus {

struct PublishResult {
  bool ok = false;
  bool duplicate = false;  // the stream already held a message with this id
  std::string error;
};

// Durable publication of one event: the port the outbox relay sees. The NATS JetStream adapter
// implements it; unit tests use an in-memory fake.
class EventPublisher {
 public:
  virtual ~EventPublisher() = default;
  // Blocks until the stream acknowledges (or refuses) the message. `message_id` goes into
  // Nats-Msg-Id so a republish after a crash is dropped by JetStream's duplicate window.
  virtual PublishResult Publish(const std::string& subject, const std::string& message_id,
                                const std::string& payload) = 0;
};

}  // namespace skiff::bus
