// libFuzzer: the node <-> guest agent channel as a hostile guest (or node) could feed it:
// arbitrary bytes in arbitrary chunks through the frame reader, each frame parsed as both
// directions' messages.
#include <cstddef>
#include <cstdint>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "skiff/node/guest_channel.h"
#include "skiff/node/v1/guest.pb.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // an invalid string field is expected here, not news
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  skiff::node::GuestFrameReader reader;
  size_t at = 0;
  while (at < size && !reader.Broken()) {
    const size_t chunk = std::min<size_t>(size - at, 1 + data[at] % 64);
    reader.Append(reinterpret_cast<const char*>(data) + at, chunk);
    at += chunk;
    while (auto frame = reader.Next()) {
      skiff::node::v1::GuestMessage message;
      if (message.ParseFromString(*frame)) (void)skiff::node::EncodeGuestFrame(message);
      skiff::node::v1::GuestRequest request;
      if (request.ParseFromString(*frame)) (void)skiff::node::EncodeGuestFrame(request);
    }
  }
  return 0;
}
