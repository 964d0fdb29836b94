#include "skiff/crypto/crypto.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <set>

namespace skiff::crypto {
namespace {

const std::string kHere = SecretContext({"sub-a", "group-1", "env", "app", "PASSWORD"});

TEST(SecretBoxTest, SealsAndOpens) {
  SecretBox box(RandomBytes(32));
  std::string sealed = box.Seal("p@ssw0rd", kHere);
  EXPECT_TRUE(SecretBox::IsSealed(sealed));
  EXPECT_EQ(sealed.rfind("enc:v2:" + box.current_key_id() + ":", 0), 0u);
  EXPECT_EQ(sealed.find("p@ssw0rd"), std::string::npos);
  EXPECT_EQ(box.Open(sealed, kHere), "p@ssw0rd");
  EXPECT_EQ(box.Open(box.Seal("", kHere), kHere), "");
}

TEST(SecretBoxTest, SameValueSealsDifferentlyEachTime) {
  SecretBox box(RandomBytes(32));
  EXPECT_NE(box.Seal("x", kHere), box.Seal("x", kHere));
}

TEST(SecretBoxTest, RejectsTamperingWrongKeyAndGarbage) {
  SecretBox box(RandomBytes(32));
  SecretBox other(RandomBytes(32));
  std::string sealed = box.Seal("secret", kHere);
  EXPECT_EQ(other.Open(sealed, kHere), std::nullopt);
  std::string tampered = sealed;
  tampered[20] = tampered[20] == 'A' ? 'B' : 'A';
  EXPECT_EQ(box.Open(tampered, kHere), std::nullopt);
  EXPECT_EQ(box.Open("secret", kHere), std::nullopt);
  EXPECT_EQ(box.Open("enc:v1:%%%", kHere), std::nullopt);
  EXPECT_EQ(box.Open("enc:v1:QUJD", kHere), std::nullopt);
  EXPECT_EQ(box.Open("enc:v2:" + box.current_key_id() + ":QUJD", kHere), std::nullopt);
  EXPECT_EQ(box.Open("enc:v2:nocolon", kHere), std::nullopt);
}

// A ciphertext copied to another group, subscription or field does not open there.
TEST(SecretBoxTest, ASealedValueOpensOnlyWhereItWasSealed) {
  SecretBox box(RandomBytes(32));
  std::string sealed = box.Seal("hunter2", kHere);
  EXPECT_EQ(box.Open(sealed, SecretContext({"sub-a", "group-2", "env", "app", "PASSWORD"})), std::nullopt);
  EXPECT_EQ(box.Open(sealed, SecretContext({"sub-b", "group-1", "env", "app", "PASSWORD"})), std::nullopt);
  EXPECT_EQ(box.Open(sealed, SecretContext({"sub-a", "group-1", "env", "app", "OTHER"})), std::nullopt);
  EXPECT_EQ(box.Open(sealed, SecretContext({"sub-a", "group-1", "secret", "app", "PASSWORD"})), std::nullopt);
  EXPECT_EQ(box.Open(sealed, ""), std::nullopt);
}

TEST(SecretBoxTest, ContextPartsCannotBeShiftedIntoOneAnother) {
  EXPECT_NE(SecretContext({"ab", "c"}), SecretContext({"a", "bc"}));
  EXPECT_NE(SecretContext({"a:b"}), SecretContext({"a", "b"}));
}

// Rotation: the new key seals; values sealed under the old one still open; they are reported
// for resealing, which the old key alone cannot open afterwards.
TEST(SecretBoxTest, RotationKeepsOldValuesOpenAndSealsWithTheNewKey) {
  const std::string old_key = Base64Encode(RandomBytes(32));
  const std::string new_key = Base64Encode(RandomBytes(32));
  SecretBox before = SecretBox::FromBase64Key(old_key);
  std::string old_value = before.Seal("v", kHere);
  SecretBox after = SecretBox::FromBase64Keys(new_key, " " + old_key + " ,");
  EXPECT_NE(after.current_key_id(), before.current_key_id());
  EXPECT_EQ(SecretBox::KeyIdOf(old_value), before.current_key_id());
  EXPECT_EQ(after.Open(old_value, kHere), "v");
  EXPECT_TRUE(after.NeedsReseal(old_value));
  std::string resealed = after.Seal(*after.Open(old_value, kHere), kHere);
  EXPECT_FALSE(after.NeedsReseal(resealed));
  EXPECT_EQ(before.Open(resealed, kHere), std::nullopt);
  EXPECT_EQ(SecretBox::FromBase64Key(new_key).Open(resealed, kHere), "v");
  EXPECT_THROW(SecretBox::FromBase64Keys(new_key, "short"), std::invalid_argument);
}

// The unbound form of earlier versions ("enc:v1:", no key id, no associated data) still opens,
// and is always reported for resealing.
TEST(SecretBoxTest, UnboundValuesOfEarlierVersionsOpenAndNeedResealing) {
  const std::string key = RandomBytes(32);
  const std::string nonce = RandomBytes(12);
  const std::string plain = "legacy";
  std::string ciphertext(plain.size(), '\0');
  std::string tag(16, '\0');
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  auto u = [](const std::string& s) { return reinterpret_cast<const unsigned char*>(s.data()); };
  ASSERT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, u(key), u(nonce)), 1);
  ASSERT_EQ(EVP_EncryptUpdate(ctx, reinterpret_cast<unsigned char*>(ciphertext.data()), &len, u(plain),
                              static_cast<int>(plain.size())), 1);
  ASSERT_EQ(EVP_EncryptFinal_ex(ctx, nullptr, &len), 1);
  ASSERT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag.data()), 1);
  EVP_CIPHER_CTX_free(ctx);
  const std::string v1 = "enc:v1:" + Base64Encode(nonce + ciphertext + tag);
  SecretBox box(key);
  EXPECT_TRUE(SecretBox::IsSealed(v1));
  EXPECT_EQ(box.Open(v1, kHere), "legacy");
  EXPECT_TRUE(box.NeedsReseal(v1));
  EXPECT_EQ(SecretBox(RandomBytes(32)).Open(v1, kHere), std::nullopt);
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
