#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace google::protobuf {
class MessageLite;
}

namespace skiff::node {

// Framing of the microVM agent channel (proto/skiff/node/v1/guest.proto): a 4-byte big-endian
// length, then the serialized message. Shared by the node and the guest agent.
constexpr size_t kMaxGuestFrame = 16 * 1024 * 1024;

std::string EncodeGuestFrame(const google::protobuf::MessageLite& message);

// Collects bytes as they arrive and hands out whole frames.
class GuestFrameReader {
 public:
  void Append(const char* data, size_t size) { buffer_.append(data, size); }
  // The next whole frame's payload; nullopt until one is complete. A frame longer than
  // kMaxGuestFrame makes the stream unusable: Broken() turns true.
  std::optional<std::string> Next();
  bool Broken() const { return broken_; }

 private:
  std::string buffer_;
  bool broken_ = false;
};

}  // namespace skiff::node
