#include "skiff/secrets/group_secrets.h"

#include "skiff/crypto/crypto.h"

namespace skiff::secrets {
namespace ci = containerinstance::v1;

std::string EnvContext(std::string_view subscription_id, std::string_view group_id, std::string_view container,
                       std::string_view variable) {
  return crypto::SecretContext({subscription_id, group_id, "env", container, variable});
}

std::string RegistryPasswordContext(std::string_view subscription_id, std::string_view group_id,
                                    std::string_view server) {
  return crypto::SecretContext({subscription_id, group_id, "registry", server});
}

std::string SecretFileContext(std::string_view subscription_id, std::string_view group_id, std::string_view volume,
                              std::string_view file) {
  return crypto::SecretContext({subscription_id, group_id, "secret", volume, file});
}

std::string ShareKeyContext(std::string_view subscription_id, std::string_view group_id, std::string_view volume) {
  return crypto::SecretContext({subscription_id, group_id, "azureFile", volume});
}

std::string WorkspaceKeyContext(std::string_view subscription_id, std::string_view group_id) {
  return crypto::SecretContext({subscription_id, group_id, "logAnalytics"});
}

void ForEachSecret(ci::ContainerGroup& group, std::string_view subscription_id, std::string_view group_id,
                   const std::function<void(std::string* value, const std::string& context)>& visit) {
  auto* props = group.mutable_properties();
  auto environment = [&](const std::string& container, auto* variables) {
    for (auto& var : *variables) {
      if (var.has_secure_value()) {
        visit(var.mutable_secure_value(), EnvContext(subscription_id, group_id, container, var.name()));
      }
    }
  };
  for (auto& c : *props->mutable_containers()) environment(c.name(), c.mutable_properties()->mutable_environment_variables());
  for (auto& c : *props->mutable_init_containers()) {
    environment(c.name(), c.mutable_properties()->mutable_environment_variables());
  }
  for (auto& cred : *props->mutable_image_registry_credentials()) {
    if (!cred.password().empty()) {
      visit(cred.mutable_password(), RegistryPasswordContext(subscription_id, group_id, cred.server()));
    }
  }
  for (auto& volume : *props->mutable_volumes()) {
    for (auto& [file, content] : *volume.mutable_secret()) {
      visit(&content, SecretFileContext(subscription_id, group_id, volume.name(), file));
    }
    if (volume.has_azure_file() && !volume.azure_file().storage_account_key().empty()) {
      visit(volume.mutable_azure_file()->mutable_storage_account_key(),
            ShareKeyContext(subscription_id, group_id, volume.name()));
    }
  }
  if (props->has_diagnostics() && !props->diagnostics().log_analytics().workspace_key().empty()) {
    visit(props->mutable_diagnostics()->mutable_log_analytics()->mutable_workspace_key(),
          WorkspaceKeyContext(subscription_id, group_id));
  }
}

void SealAll(ci::ContainerGroup& group, const crypto::SecretBox& box, std::string_view subscription_id,
             std::string_view group_id) {
  ForEachSecret(group, subscription_id, group_id,
                [&](std::string* value, const std::string& context) { *value = box.Seal(*value, context); });
}

ResealCount ResealAll(ci::ContainerGroup& group, const crypto::SecretBox& box, std::string_view subscription_id,
                      std::string_view group_id) {
  ResealCount count;
  ForEachSecret(group, subscription_id, group_id, [&](std::string* value, const std::string& context) {
    if (!box.NeedsReseal(*value)) return;
    auto opened = box.Open(*value, context);
    if (!opened) {
      ++count.unopenable;
      return;
    }
    *value = box.Seal(*opened, context);
    ++count.resealed;
  });
  return count;
}

Opener MakeOpener(std::shared_ptr<const crypto::SecretBox> box) {
  return [box = std::move(box)](const std::string& value, const std::string& context) -> std::optional<std::string> {
    if (!crypto::SecretBox::IsSealed(value)) return value;
    if (!box) return std::nullopt;
    return box->Open(value, context);
  };
}

}  // namespace skiff::secrets
