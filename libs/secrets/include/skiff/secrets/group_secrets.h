#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "skiff/containerinstance/v1/container_group.pb.h"

namespace skiff::crypto {
class SecretBox;
}

// The secret fields of a container group and the place each is bound to when sealed: the
// gateway seals with these contexts, the node and the image cache open with the same ones, so a
// value copied to another group, subscription or field does not open.
namespace skiff::secrets {

std::string EnvContext(std::string_view subscription_id, std::string_view group_id, std::string_view container,
                       std::string_view variable);
std::string RegistryPasswordContext(std::string_view subscription_id, std::string_view group_id,
                                    std::string_view server);
std::string SecretFileContext(std::string_view subscription_id, std::string_view group_id, std::string_view volume,
                              std::string_view file);
std::string ShareKeyContext(std::string_view subscription_id, std::string_view group_id, std::string_view volume);
std::string WorkspaceKeyContext(std::string_view subscription_id, std::string_view group_id);

// Calls visit(value, context) for every secret field of the group that holds a value.
void ForEachSecret(containerinstance::v1::ContainerGroup& group, std::string_view subscription_id,
                   std::string_view group_id, const std::function<void(std::string* value, const std::string& context)>& visit);

// Seals every secret field as given: a value that already looks sealed is sealed again as the
// plain text it is, never passed through (a request cannot smuggle in a ciphertext).
void SealAll(containerinstance::v1::ContainerGroup& group, const crypto::SecretBox& box, std::string_view subscription_id,
             std::string_view group_id);

struct ResealCount {
  int resealed = 0;    // opened and sealed again under the current key
  int unopenable = 0;  // left as they are: no key here opens them
};
// Rotation: every sealed field under an older key (or in the unbound v1 form) is opened and
// sealed again under the current key.
ResealCount ResealAll(containerinstance::v1::ContainerGroup& group, const crypto::SecretBox& box,
                      std::string_view subscription_id, std::string_view group_id);

// What a node or image cache opens sealed values with: a plain value comes back as it is; a
// sealed one opens only with a key (`box` null: none configured) for its context.
using Opener = std::function<std::optional<std::string>(const std::string& value, const std::string& context)>;
Opener MakeOpener(std::shared_ptr<const crypto::SecretBox> box);

}  // namespace skiff::secrets
