#include "skiff/secrets/group_secrets.h"

#include <gtest/gtest.h>

#include "skiff/crypto/crypto.h"

namespace skiff::secrets {
namespace {
namespace ci = containerinstance::v1;

ci::ContainerGroup GroupWithEverySecret() {
  ci::ContainerGroup group;
  auto* props = group.mutable_properties();
  auto* app = props->add_containers();
  app->set_name("app");
  auto* var = app->mutable_properties()->add_environment_variables();
  var->set_name("PASSWORD");
  var->set_secure_value("hunter2");
  auto* plain = app->mutable_properties()->add_environment_variables();
  plain->set_name("MODE");
  plain->set_value("debug");
  auto* init = props->add_init_containers();
  init->set_name("setup");
  auto* init_var = init->mutable_properties()->add_environment_variables();
  init_var->set_name("TOKEN");
  init_var->set_secure_value("t0k3n");
  auto* cred = props->add_image_registry_credentials();
  cred->set_server("registry.example");
  cred->set_username("me");
  cred->set_password("registry-pass");
  auto* secret = props->add_volumes();
  secret->set_name("certs");
  (*secret->mutable_secret())["key.pem"] = "PRIVATE";
  auto* share = props->add_volumes();
  share->set_name("data");
  share->mutable_azure_file()->set_storage_account_key("account-key");
  props->mutable_diagnostics()->mutable_log_analytics()->set_workspace_key("workspace-key");
  return group;
}

TEST(GroupSecretsTest, SealAllSealsEverySecretFieldAndNothingElse) {
  crypto::SecretBox box(crypto::RandomBytes(32));
  ci::ContainerGroup group = GroupWithEverySecret();
  SealAll(group, box, "sub", "g1");
  const auto& props = group.properties();
  EXPECT_EQ(props.containers(0).properties().environment_variables(1).value(), "debug");
  const std::string& sealed = props.containers(0).properties().environment_variables(0).secure_value();
  EXPECT_TRUE(crypto::SecretBox::IsSealed(sealed));
  EXPECT_EQ(box.Open(sealed, EnvContext("sub", "g1", "app", "PASSWORD")), "hunter2");
  EXPECT_EQ(box.Open(props.init_containers(0).properties().environment_variables(0).secure_value(),
                     EnvContext("sub", "g1", "setup", "TOKEN")), "t0k3n");
  EXPECT_EQ(box.Open(props.image_registry_credentials(0).password(), RegistryPasswordContext("sub", "g1", "registry.example")),
            "registry-pass");
  EXPECT_EQ(box.Open(props.volumes(0).secret().at("key.pem"), SecretFileContext("sub", "g1", "certs", "key.pem")), "PRIVATE");
  EXPECT_EQ(box.Open(props.volumes(1).azure_file().storage_account_key(), ShareKeyContext("sub", "g1", "data")),
            "account-key");
  EXPECT_EQ(box.Open(props.diagnostics().log_analytics().workspace_key(), WorkspaceKeyContext("sub", "g1")),
            "workspace-key");
  int fields = 0;
  ForEachSecret(group, "sub", "g1", [&](std::string* value, const std::string&) {
    EXPECT_TRUE(crypto::SecretBox::IsSealed(*value));
    ++fields;
  });
  EXPECT_EQ(fields, 6);
}

// A request cannot pass a ciphertext through (one taken from another group, say): what looks
// sealed is sealed again, so it opens to the very text that was sent.
TEST(GroupSecretsTest, AValueThatLooksSealedIsSealedAgainAsPlainText) {
  crypto::SecretBox box(crypto::RandomBytes(32));
  ci::ContainerGroup victim = GroupWithEverySecret();
  SealAll(victim, box, "sub-victim", "g-victim");
  const std::string stolen = victim.properties().containers(0).properties().environment_variables(0).secure_value();

  ci::ContainerGroup attacker = GroupWithEverySecret();
  attacker.mutable_properties()->mutable_containers(0)->mutable_properties()->mutable_environment_variables(0)->set_secure_value(stolen);
  SealAll(attacker, box, "sub-attacker", "g-attacker");
  const std::string& sealed = attacker.properties().containers(0).properties().environment_variables(0).secure_value();
  EXPECT_EQ(box.Open(sealed, EnvContext("sub-attacker", "g-attacker", "app", "PASSWORD")), stolen);
  // And the stolen ciphertext itself opens only in the victim's group.
  EXPECT_EQ(box.Open(stolen, EnvContext("sub-attacker", "g-attacker", "app", "PASSWORD")), std::nullopt);
  EXPECT_EQ(box.Open(stolen, EnvContext("sub-victim", "g-other", "app", "PASSWORD")), std::nullopt);
}

TEST(GroupSecretsTest, ResealAllMovesOldValuesToTheCurrentKey) {
  const std::string old_key = crypto::Base64Encode(crypto::RandomBytes(32));
  const std::string new_key = crypto::Base64Encode(crypto::RandomBytes(32));
  ci::ContainerGroup group = GroupWithEverySecret();
  SealAll(group, crypto::SecretBox::FromBase64Key(old_key), "sub", "g1");
  auto rotated = crypto::SecretBox::FromBase64Keys(new_key, old_key);
  ResealCount first = ResealAll(group, rotated, "sub", "g1");
  EXPECT_EQ(first.resealed, 6);
  EXPECT_EQ(first.unopenable, 0);
  EXPECT_EQ(ResealAll(group, rotated, "sub", "g1").resealed, 0);
  auto only_new = crypto::SecretBox::FromBase64Key(new_key);
  EXPECT_EQ(only_new.Open(group.properties().containers(0).properties().environment_variables(0).secure_value(),
                          EnvContext("sub", "g1", "app", "PASSWORD")), "hunter2");
  // Under a key this box does not hold: counted, left alone.
  ci::ContainerGroup foreign = GroupWithEverySecret();
  SealAll(foreign, crypto::SecretBox(crypto::RandomBytes(32)), "sub", "g1");
  EXPECT_EQ(ResealAll(foreign, rotated, "sub", "g1").unopenable, 6);
}

}  // namespace
}  // namespace skiff::secrets
