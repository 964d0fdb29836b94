// The microVM agent channel's framing: whole frames out of arbitrary chunks, and a frame that
// claims more than the limit breaks the stream instead of allocating it.
#include <gtest/gtest.h>

#include "skiff/node/guest_channel.h"
#include "skiff/node/v1/guest.pb.h"

namespace skiff::node {
namespace {

TEST(GuestChannelTest, FramesSurviveAnyChunking) {
  v1::GuestMessage first, second;
  first.mutable_ready()->set_kernel_release("6.1.0-56-cloud-amd64");
  second.mutable_exec_output()->set_exec_id(7);
  second.mutable_exec_output()->set_data(std::string("line\0with nul\n", 14));
  const std::string bytes = EncodeGuestFrame(first) + EncodeGuestFrame(second);
  GuestFrameReader reader;
  std::vector<v1::GuestMessage> got;
  for (char c : bytes) {  // one byte at a time: the worst split
    reader.Append(&c, 1);
    while (auto frame = reader.Next()) {
      v1::GuestMessage message;
      ASSERT_TRUE(message.ParseFromString(*frame));
      got.push_back(message);
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].ready().kernel_release(), "6.1.0-56-cloud-amd64");
  EXPECT_EQ(got[1].exec_output().data(), std::string("line\0with nul\n", 14));
  EXPECT_FALSE(reader.Broken());
}

TEST(GuestChannelTest, AnOversizedFrameBreaksTheStream) {
  GuestFrameReader reader;
  const char huge[] = {'\x7f', '\xff', '\xff', '\xff', 'x'};
  reader.Append(huge, sizeof huge);
  EXPECT_FALSE(reader.Next());
  EXPECT_TRUE(reader.Broken());
}

}  // namespace
}  // namespace skiff::node
