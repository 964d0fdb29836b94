#include "skiff/crypto/nkey.h"

#include <gtest/gtest.h>

namespace skiff::crypto {
namespace {

TEST(NkeyTest, ANewUserKeyHasNatsShapeAndItsSeedGivesItsPublicKey) {
  const NkeyPair pair = NewUserNkey();
  EXPECT_EQ(pair.seed.substr(0, 2), "SU");
  EXPECT_EQ(pair.seed.size(), 58u);
  EXPECT_EQ(pair.public_key.substr(0, 1), "U");
  EXPECT_EQ(pair.public_key.size(), 56u);
  EXPECT_EQ(UserNkeyPublicKey(pair.seed), pair.public_key);
  EXPECT_NE(NewUserNkey().seed, pair.seed);
}

TEST(NkeyTest, SignaturesVerifyAgainstTheirKeyOnly) {
  const NkeyPair pair = NewUserNkey();
  auto signature = NkeySign(pair.seed, "nonce-from-server");
  ASSERT_TRUE(signature);
  EXPECT_EQ(signature->size(), 64u);
  EXPECT_TRUE(NkeyVerify(pair.public_key, "nonce-from-server", *signature));
  EXPECT_FALSE(NkeyVerify(pair.public_key, "another-nonce", *signature));
  EXPECT_FALSE(NkeyVerify(NewUserNkey().public_key, "nonce-from-server", *signature));
}

TEST(NkeyTest, DamagedOrForeignSeedsAreRefused) {
  std::string seed = NewUserNkey().seed;
  std::string damaged = seed;
  damaged[10] = damaged[10] == 'A' ? 'B' : 'A';
  EXPECT_EQ(UserNkeyPublicKey(damaged), std::nullopt);  // checksum
  EXPECT_EQ(UserNkeyPublicKey("not a seed"), std::nullopt);
  EXPECT_EQ(UserNkeyPublicKey(""), std::nullopt);
  EXPECT_EQ(UserNkeyPublicKey(NewUserNkey().public_key), std::nullopt);  // a public key is no seed
  EXPECT_EQ(NkeySign(damaged, "x"), std::nullopt);
}

}  // namespace
}  // namespace skiff::crypto
