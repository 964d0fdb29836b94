#pragma once

#include <string>
#include <vector>

namespace skiff::bus {

struct OutgoingMessage {
  std::string subject;
  std::string message_id;
  std::string payload;
};

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
  // Publishes `messages` and returns how many leading ones the stream surely holds (`error`:
  // why not all). This one publishes them one by one; an adapter may pipeline them.
  virtual size_t PublishAll(const std::vector<OutgoingMessage>& messages, std::string* error) {
    size_t published = 0;
    for (const auto& m : messages) {
      PublishResult result = Publish(m.subject, m.message_id, m.payload);
      if (!result.ok) {
        if (error != nullptr) *error = result.error;
        break;
      }
      ++published;
    }
    return published;
  }
};

}  // namespace skiff::bus
