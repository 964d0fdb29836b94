#include "skiff/node/guest_channel.h"

#include <google/protobuf/message_lite.h>

#include <cstdint>

namespace skiff::node {

std::string EncodeGuestFrame(const google::protobuf::MessageLite& message) {
  const std::string payload = message.SerializeAsString();
  const uint32_t size = static_cast<uint32_t>(payload.size());
  std::string frame;
  frame.reserve(4 + payload.size());
  for (int shift = 24; shift >= 0; shift -= 8) frame += static_cast<char>((size >> shift) & 0xff);
  frame += payload;
  return frame;
}

std::optional<std::string> GuestFrameReader::Next() {
  if (broken_ || buffer_.size() < 4) return std::nullopt;
  uint32_t size = 0;
  for (int i = 0; i < 4; ++i) size = size << 8 | static_cast<unsigned char>(buffer_[i]);
  if (size > kMaxGuestFrame) {
    broken_ = true;
    return std::nullopt;
  }
  if (buffer_.size() < 4 + static_cast<size_t>(size)) return std::nullopt;
  std::string payload = buffer_.substr(4, size);
  buffer_.erase(0, 4 + size);
  return payload;
}

}  // namespace skiff::node
