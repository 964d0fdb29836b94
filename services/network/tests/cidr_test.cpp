#include "skiff/network/cidr.h"

#include <gtest/gtest.h>

using namespace skiff::network;

TEST(Cidr, ParsesAndFormats) {
  auto p = Ipv4Prefix::Parse("10.1.2.0/24");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ToString(), "10.1.2.0/24");
  EXPECT_EQ(p->Size(), 256u);
  EXPECT_EQ(FormatIpv4(p->Last()), "10.1.2.255");
  EXPECT_EQ(FormatIpv4(FirstUsable(*p)), "10.1.2.4");
  EXPECT_EQ(FormatIpv4(LastUsable(*p)), "10.1.2.254");
  EXPECT_EQ(FormatIpv4(GatewayOf(*p)), "10.1.2.1");
  EXPECT_EQ(Ipv4Prefix::Parse("0.0.0.0/0")->Mask(), 0u);
}

TEST(Cidr, RejectsMalformedPrefixes) {
  for (const char* bad : {"10.1.2.0", "10.1.2.0/33", "10.1.2.1/24", "10.1.2/24", "10.1.2.0/-1", "256.0.0.0/8",
                          "010.1.2.0/24", "10.1.2.0/24x", "", "a.b.c.d/8", "10.1.2.0/"}) {
    EXPECT_FALSE(Ipv4Prefix::Parse(bad)) << bad;
  }
  EXPECT_FALSE(ParseIpv4("1.2.3.4.5"));
  EXPECT_FALSE(ParseIpv4("1.2.3"));
}

TEST(Cidr, OverlapAndContainment) {
  auto big = *Ipv4Prefix::Parse("10.0.0.0/16");
  auto inside = *Ipv4Prefix::Parse("10.0.5.0/24");
  auto outside = *Ipv4Prefix::Parse("10.1.0.0/24");
  EXPECT_TRUE(big.Contains(inside));
  EXPECT_FALSE(inside.Contains(big));
  EXPECT_TRUE(inside.Overlaps(big));
  EXPECT_TRUE(big.Overlaps(inside));
  EXPECT_FALSE(big.Overlaps(outside));
}
