#include "skiff/store/outbox_relay.h"

#include <gtest/gtest.h>

#include <map>

namespace skiff::store {
namespace {

// In-memory stand-in for JetStream with its duplicate window.
class FakeStream : public bus::EventPublisher {
 public:
  bus::PublishResult Publish(const std::string& subject, const std::string& id, const std::string& payload) override {
    if (fail_after_ >= 0 && calls_++ >= fail_after_) return {false, false, "nats: timeout"};
    bool duplicate = by_id_.count(id) > 0;
    if (!duplicate) {
      by_id_[id] = payload;
      order_.push_back(id);
    }
    return {true, duplicate, ""};
  }
  int fail_after_ = -1;
  int calls_ = 0;
  std::map<std::string, std::string> by_id_;
  std::vector<std::string> order_;
};

std::vector<OutboxEntry> Batch(int n) {
  std::vector<OutboxEntry> batch;
  for (int i = 1; i <= n; ++i) batch.push_back({i, "id-" + std::to_string(i), "skiff.events.group.created", "p"});
  return batch;
}

TEST(PublishInOrderTest, PublishesAllInOrder) {
  FakeStream stream;
  EXPECT_EQ(PublishInOrder(Batch(3), stream, nullptr), 3u);
  EXPECT_EQ(stream.order_, (std::vector<std::string>{"id-1", "id-2", "id-3"}));
}

TEST(PublishInOrderTest, StopsAtFirstFailureSoOrderIsKept) {
  FakeStream stream;
  stream.fail_after_ = 2;
  std::string error;
  EXPECT_EQ(PublishInOrder(Batch(5), stream, &error), 2u);
  EXPECT_EQ(error, "nats: timeout");
  EXPECT_EQ(stream.order_.size(), 2u);
}

TEST(PublishInOrderTest, RepublishAfterCrashLandsOnce) {
  FakeStream stream;
  // First relay published everything but died before marking rows: the next relay resends.
  PublishInOrder(Batch(4), stream, nullptr);
  EXPECT_EQ(PublishInOrder(Batch(4), stream, nullptr), 4u);
  EXPECT_EQ(stream.order_.size(), 4u);
}

TEST(HexTest, RoundTripsBinary) {
  std::string bytes("\x00\x01\xfe\xff payload", 12);
  EXPECT_EQ(HexDecode(HexEncode(bytes)), bytes);
}

}  // namespace
}  // namespace skiff::store
