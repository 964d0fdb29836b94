#include "skiff/crypto/crypto.h"

#include <gtest/gtest.h>

#include <set>

namespace skiff::crypto {
namespace {

TEST(SecretBoxTest, SealsAndOpens) {
  SecretBox box(RandomBytes(32));
  std::string sealed = box.Seal("p@ssw0rd");
  EXPECT_TRUE(SecretBox::IsSealed(sealed));
  EXPECT_EQ(sealed.find("p@ssw0rd"), std::string::npos);
  EXPECT_EQ(box.Open(sealed), "p@ssw0rd");
  EXPECT_EQ(box.Open(box.Seal("")), "");
}

TEST(SecretBoxTest, SameValueSealsDifferentlyEachTime) {
  SecretBox box(RandomBytes(32));
  EXPECT_NE(box.Seal("x"), box.Seal("x"));
}

TEST(SecretBoxTest, RejectsTamperingWrongKeyAndGarbage) {
  SecretBox box(RandomBytes(32));
  SecretBox other(RandomBytes(32));
  std::string sealed = box.Seal("secret");
  EXPECT_EQ(other.Open(sealed), std::nullopt);
  std::string tampered = sealed;
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  EXPECT_EQ(box.Open(tampered), std::nullopt);
  EXPECT_EQ(box.Open("secret"), std::nullopt);
  EXPECT_EQ(box.Open("enc:v1:%%%"), std::nullopt);
  EXPECT_EQ(box.Open("enc:v1:QUJD"), std::nullopt);
}

TEST(SecretBoxTest, KeyMustBe256Bits) {
  EXPECT_THROW(SecretBox(std::string(16, 'k')), std::invalid_argument);
  EXPECT_THROW(SecretBox::FromBase64Key("not base64!"), std::invalid_argument);
  EXPECT_NO_THROW(SecretBox::FromBase64Key(Base64Encode(std::string(32, 'k'))));
}

TEST(TokenTest, TokensAreUniqueAndHashStable) {
  std::string a = NewApiToken();
  std::string b = NewApiToken();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("skf_", 0), 0u);
  EXPECT_EQ(HashApiToken(a), HashApiToken(a));
  EXPECT_NE(HashApiToken(a), HashApiToken(b));
  EXPECT_EQ(HashApiToken(a).size(), 64u);
  // Known SHA-256 vector.
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, IncrementalMatchesOneShot) {
  Sha256 hash;
  hash.Update("a", 1);
  hash.Update("bc", 2);
  EXPECT_EQ(hash.FinishDigest(), "sha256:" + Sha256Hex("abc"));
}

TEST(UuidTest, Version4AndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string id = NewUuid();
    EXPECT_TRUE(IsUuid(id)) << id;
    EXPECT_EQ(id[14], '4');
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_FALSE(IsUuid("not-a-uuid"));
}

TEST(Base64Test, RoundTrip) {
  for (std::string s : {"", "a", "ab", "abc", "abcd"}) {
    EXPECT_EQ(Base64Decode(Base64Encode(s)), s);
  }
  EXPECT_EQ(Base64Decode("abc"), std::nullopt);
}

}  // namespace
TEST(CryptoTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("key-1", "key-1"));
  EXPECT_FALSE(ConstantTimeEquals("key-1", "key-2"));
  EXPECT_FALSE(ConstantTimeEquals("key", "key-1"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

}  // namespace skiff::crypto
