#include "skiff/gateway/validation.h"

#include <boost/algorithm/string/predicate.hpp>
#include <cmath>

#include "skiff/confine/names.h"
#include "skiff/containerinstance/v1/container_group.pb.h"
#include "skiff/oci/image_reference.h"

namespace skiff::gateway {
namespace ci = containerinstance::v1;
namespace {

ApiError Error(ErrorKind kind, std::string message, std::string target) {
  return {kind, std::move(message), std::move(target)};
}

// Accepts `value` in any case among `allowed` and rewrites it to the canonical spelling;
// empty takes `fallback`.
std::optional<ApiError> CanonicalEnum(std::string* value, const std::vector<std::string>& allowed,
                                      const std::string& fallback, const std::string& field) {
  if (value->empty()) {
    *value = fallback;
    return std::nullopt;
  }
  for (const auto& option : allowed) {
    if (boost::iequals(*value, option)) {
      *value = option;
      return std::nullopt;
    }
  }
  std::string list;
  for (const auto& option : allowed) list += (list.empty() ? "" : ", ") + option;
  return Error(ErrorKind::kInvalidEnum, "The value '" + *value + "' of '" + field + "' is invalid; allowed: " + list + ".",
               field);
}

bool IsValidPort(const std::optional<int>& port) { return port && *port >= 1 && *port <= 65535; }

std::optional<ApiError> CheckPort(int port, const ValidationLimits& limits, const std::string& field) {
  if (port < 1 || port > 65535) {
    return Error(ErrorKind::kInvalidPort, "The port " + std::to_string(port) + " in '" + field +
                                              "' is out of range; ports are 1 to 65535.",
                 field);
  }
  if (limits.reserved_ports.count(port) > 0) {
    return Error(ErrorKind::kReservedPort,
                 "The port " + std::to_string(port) + " in '" + field + "' is reserved by this deployment.", field);
  }
  return std::nullopt;
}

std::optional<ApiError> CheckEnvironment(const google::protobuf::RepeatedPtrField<ci::EnvironmentVariable>& env,
                                         const std::string& field) {
  std::set<std::string> names;
  for (int i = 0; i < env.size(); ++i) {
    const auto& var = env[i];
    std::string where = field + "[" + std::to_string(i) + "]";
    if (var.name().empty() || var.name().size() > 1024 || var.name().find('=') != std::string::npos ||
        var.name().find('\0') != std::string::npos) {
      return Error(ErrorKind::kInvalidEnvironmentVariable,
                   "The environment variable name in '" + where + "' must be 1-1024 characters without '='.", where);
    }
    if (var.has_value() && var.has_secure_value()) {
      return Error(ErrorKind::kInvalidEnvironmentVariable,
                   "The environment variable '" + var.name() + "' sets both 'value' and 'secureValue'; set one.",
                   where);
    }
    if (!names.insert(var.name()).second) {
      return Error(ErrorKind::kInvalidEnvironmentVariable,
                   "The environment variable '" + var.name() + "' is defined twice in '" + field + "'.", where);
    }
  }
  return std::nullopt;
}

std::optional<ApiError> CheckMounts(const google::protobuf::RepeatedPtrField<ci::VolumeMount>& mounts,
                                    const std::set<std::string>& volumes, const std::string& field) {
  std::set<std::string> paths;
  for (int i = 0; i < mounts.size(); ++i) {
    const auto& mount = mounts[i];
    std::string where = field + "[" + std::to_string(i) + "]";
    if (volumes.count(mount.name()) == 0) {
      return Error(ErrorKind::kUndefinedVolume,
                   "The volume mount '" + mount.name() + "' names no volume defined in 'properties.volumes'.", where);
    }
    if (auto why = confine::CheckMountPath(mount.mount_path())) {
      return Error(ErrorKind::kInvalidVolume, "The mount path '" + mount.mount_path() + "' " + *why + ".",
                   where + ".mountPath");
    }
    if (!paths.insert(mount.mount_path()).second) {
      return Error(ErrorKind::kInvalidVolume, "The mount path '" + mount.mount_path() + "' is used twice.", where);
    }
  }
  return std::nullopt;
}

template <typename Probe>
std::optional<ApiError> CheckProbe(const Probe& probe, const std::string& field) {
  int kinds = (probe.has_exec() ? 1 : 0) + (probe.has_http_get() ? 1 : 0) + (probe.has_tcp_socket() ? 1 : 0);
  if (kinds != 1) {
    return Error(ErrorKind::kInvalidProbe, "The probe '" + field + "' must set exactly one of exec, httpGet, tcpSocket.",
                 field);
  }
  if (probe.has_exec() && probe.exec().command().empty()) {
    return Error(ErrorKind::kInvalidProbe, "The exec probe '" + field + "' needs a command.", field);
  }
  if (probe.has_http_get() && !IsValidPort(probe.http_get().has_port() ? std::optional<int>(probe.http_get().port())
                                                                        : std::nullopt)) {
    return Error(ErrorKind::kInvalidProbe, "The httpGet probe '" + field + "' needs a port from 1 to 65535.", field);
  }
  if (probe.has_tcp_socket() && !IsValidPort(probe.tcp_socket().has_port()
                                                 ? std::optional<int>(probe.tcp_socket().port())
                                                 : std::nullopt)) {
    return Error(ErrorKind::kInvalidProbe, "The tcpSocket probe '" + field + "' needs a port from 1 to 65535.", field);
  }
  for (int value : {probe.initial_delay_seconds(), probe.period_seconds(), probe.failure_threshold(),
                    probe.success_threshold(), probe.timeout_seconds()}) {
    if (value < 0) {
      return Error(ErrorKind::kInvalidProbe, "The probe '" + field + "' has a negative timing or threshold.", field);
    }
  }
  return std::nullopt;
}

bool IsFinitePositive(double value) { return std::isfinite(value) && value > 0; }

}  // namespace

bool IsValidAciName(const std::string& name) { return confine::IsAciName(name); }

bool IsValidResourceGroupName(const std::string& name) {
  if (name.empty() || name.size() > 90 || name.back() == '.') return false;
  for (unsigned char c : name) {
    if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '(' || c == ')')) return false;
  }
  return true;
}

bool IsValidImageReference(const std::string& image) { return oci::ParseImageReference(image).has_value(); }

std::optional<ApiError> ValidateTags(const google::protobuf::Map<std::string, std::string>& tags) {
  if (tags.size() > 50) return Error(ErrorKind::kInvalidTags, "A resource can have at most 50 tags.", "tags");
  for (const auto& [name, value] : tags) {
    if (name.empty() || name.size() > 512) {
      return Error(ErrorKind::kInvalidTags, "Tag names must be 1-512 characters.", "tags");
    }
    if (value.size() > 256) {
      return Error(ErrorKind::kInvalidTags, "The value of tag '" + name + "' is longer than 256 characters.", "tags");
    }
  }
  return std::nullopt;
}

std::optional<ApiError> ApplyIsolationPolicy(ci::ContainerGroup& group, const std::string& subscription_id,
                                             const ValidationLimits& limits) {
  auto* props = group.mutable_properties();
  const bool required = limits.microvm_subscriptions.count(subscription_id) > 0;
  // Absent stays absent where it means the default anyway (ACI's own clients never send it).
  if (props->isolation().empty() && (required || limits.default_isolation == "MicroVM")) {
    props->set_isolation("MicroVM");
  }
  if (required && props->isolation() != "MicroVM") {
    return Error(ErrorKind::kIsolationRequired,
                 "The subscription '" + subscription_id + "' requires 'MicroVM' isolation for its container groups; '" +
                     props->isolation() + "' is not allowed.",
                 "properties.isolation");
  }
  return std::nullopt;
}

std::optional<ApiError> ValidateAndNormalize(ci::ContainerGroup& group, const ValidationLimits& limits) {
  // Location: required, one of this deployment's.
  if (group.location().empty()) {
    return Error(ErrorKind::kInvalidLocation, "The 'location' property is required.", "location");
  }
  bool known_location = false;
  for (const auto& location : limits.locations) {
    if (boost::iequals(location, group.location())) {
      group.set_location(location);
      known_location = true;
    }
  }
  if (!known_location) {
    std::string list;
    for (const auto& location : limits.locations) list += (list.empty() ? "" : ", ") + location;
    return Error(ErrorKind::kInvalidLocation,
                 "The location '" + group.location() + "' is not available; available locations: " + list + ".",
                 "location");
  }
  if (auto error = ValidateTags(group.tags())) return error;
  if (group.zones_size() > 1) {
    return Error(ErrorKind::kInvalidZones, "A container group can be placed in at most one zone.", "zones");
  }
  for (const auto& zone : group.zones()) {
    if (zone.empty() || zone.size() > 16) return Error(ErrorKind::kInvalidZones, "Zone names are 1-16 characters.", "zones");
  }

  ci::ContainerGroupProperties* props = group.mutable_properties();
  if (auto e = CanonicalEnum(props->mutable_os_type(), {"Linux", "Windows"}, "Linux", "properties.osType")) return e;
  if (props->os_type() == "Windows") {
    return Error(ErrorKind::kUnsupportedOsType,
                 "osType 'Windows' is not supported by this deployment; Skiff runs Linux containers only.",
                 "properties.osType");
  }
  if (auto e = CanonicalEnum(props->mutable_restart_policy(), {"Always", "OnFailure", "Never"}, "Always",
                             "properties.restartPolicy")) {
    return e;
  }
  if (auto e = CanonicalEnum(props->mutable_priority(), {"Regular", "Spot"}, "Regular", "properties.priority")) return e;
  if (auto e = CanonicalEnum(props->mutable_sku(), {"Standard", "Dedicated", "Confidential"}, "Standard",
                             "properties.sku")) {
    return e;
  }
  if (!props->isolation().empty()) {  // absent stays absent: ACI's own clients never send it
    if (auto e = CanonicalEnum(props->mutable_isolation(), {"Container", "MicroVM"}, "Container",
                               "properties.isolation")) {
      return e;
    }
  }
  if (props->containers().empty()) {
    return Error(ErrorKind::kMissingContainers, "A container group needs at least one container.", "properties.containers");
  }

  // Volumes.
  std::set<std::string> volume_names;
  for (int i = 0; i < props->volumes_size(); ++i) {
    const auto& volume = props->volumes(i);
    std::string where = "properties.volumes[" + std::to_string(i) + "]";
    if (!IsValidAciName(volume.name())) {
      return Error(ErrorKind::kInvalidVolume,
                   "The volume name '" + volume.name() +
                       "' is invalid: use 1-63 lower-case letters, digits and single hyphens, not at either end.",
                   where);
    }
    if (!volume_names.insert(volume.name()).second) {
      return Error(ErrorKind::kInvalidVolume, "The volume name '" + volume.name() + "' is used twice.", where);
    }
    int kinds = (volume.has_azure_file() ? 1 : 0) + (volume.has_empty_dir() ? 1 : 0) + (volume.secret_size() > 0 ? 1 : 0) +
                (volume.has_git_repo() ? 1 : 0);
    if (kinds != 1) {
      return Error(ErrorKind::kInvalidVolume,
                   "The volume '" + volume.name() + "' must set exactly one of azureFile, emptyDir, secret, gitRepo.",
                   where);
    }
    if (volume.has_azure_file()) {
      const auto& share = volume.azure_file();
      if (!confine::IsStorageAccountName(share.storage_account_name())) {
        return Error(ErrorKind::kInvalidVolume,
                     "The azureFile volume '" + volume.name() + "' has an invalid storageAccountName '" +
                         share.storage_account_name() + "': use 3-24 lower-case letters and digits.",
                     where + ".azureFile.storageAccountName");
      }
      if (!confine::IsShareName(share.share_name())) {
        return Error(ErrorKind::kInvalidVolume,
                     "The azureFile volume '" + volume.name() + "' has an invalid shareName '" + share.share_name() +
                         "': use 3-63 lower-case letters, digits and single hyphens, starting and ending with a "
                         "letter or digit.",
                     where + ".azureFile.shareName");
      }
      if (share.storage_account_key().empty()) {
        return Error(ErrorKind::kInvalidVolume,
                     "The azureFile volume '" + volume.name() + "' needs a storageAccountKey.",
                     where + ".azureFile.storageAccountKey");
      }
    }
    if (volume.has_git_repo()) {
      const auto& repo = volume.git_repo();
      if (auto why = confine::CheckGitRepository(repo.repository(), limits.git_insecure_hosts)) {
        return Error(ErrorKind::kInvalidVolume,
                     "The gitRepo volume '" + volume.name() + "' has an invalid repository: it " + *why + ".",
                     where + ".gitRepo.repository");
      }
      if (auto why = confine::CheckRelativePath(repo.directory())) {
        return Error(ErrorKind::kInvalidVolume,
                     "The gitRepo volume '" + volume.name() + "' has an invalid directory '" + repo.directory() +
                         "': it " + *why + ".",
                     where + ".gitRepo.directory");
      }
      if (repo.revision().size() > 256 || (!repo.revision().empty() && repo.revision().front() == '-')) {
        return Error(ErrorKind::kInvalidVolume,
                     "The gitRepo volume '" + volume.name() + "' has an invalid revision '" + repo.revision() + "'.",
                     where + ".gitRepo.revision");
      }
    }
    for (const auto& [file, content] : volume.secret()) {
      if (!confine::IsFileName(file)) {
        return Error(ErrorKind::kInvalidVolume,
                     "The secret volume '" + volume.name() + "' has an invalid file name '" + file + "'.", where);
      }
    }
  }

  // Containers and init containers share one name space.
  std::set<std::string> container_names;
  std::set<int> container_ports;
  double total_cpu = 0;
  double total_memory = 0;
  for (int i = 0; i < props->containers_size(); ++i) {
    auto* container = props->mutable_containers(i);
    std::string where = "properties.containers[" + std::to_string(i) + "]";
    if (!IsValidAciName(container->name())) {
      return Error(ErrorKind::kInvalidContainerName,
                   "The container name '" + container->name() +
                       "' is invalid: use 1-63 lower-case letters, digits and single hyphens, not at either end.",
                   where + ".name");
    }
    if (!container_names.insert(container->name()).second) {
      return Error(ErrorKind::kDuplicateContainerName,
                   "The container name '" + container->name() + "' is used more than once in the group.", where + ".name");
    }
    const auto& p = container->properties();
    if (!IsValidImageReference(p.image())) {
      return Error(ErrorKind::kInvalidImage,
                   "The image '" + p.image() + "' of container '" + container->name() + "' is not a valid reference.",
                   where + ".properties.image");
    }
    const auto& requests = p.resources().requests();
    if (!requests.has_cpu() || !requests.has_memory_in_gb() || !IsFinitePositive(requests.cpu()) ||
        !IsFinitePositive(requests.memory_in_gb())) {
      return Error(ErrorKind::kInvalidResourceRequests,
                   "The container '" + container->name() +
                       "' must request a positive 'cpu' and 'memoryInGB' in properties.resources.requests.",
                   where + ".properties.resources.requests");
    }
    if (std::fabs(requests.cpu() * 100 - std::round(requests.cpu() * 100)) > 1e-6 ||
        std::fabs(requests.memory_in_gb() * 10 - std::round(requests.memory_in_gb() * 10)) > 1e-6) {
      return Error(ErrorKind::kInvalidResourceRequests,
                   "The container '" + container->name() +
                       "' requests cpu in steps of 0.01 and memoryInGB in steps of 0.1.",
                   where + ".properties.resources.requests");
    }
    if (requests.has_gpu() && (requests.gpu().count() < 1 || requests.gpu().count() > 4)) {
      return Error(ErrorKind::kInvalidResourceRequests,
                   "The container '" + container->name() + "' requests 1 to 4 GPUs when it requests any.",
                   where + ".properties.resources.requests.gpu");
    }
    if (p.resources().has_limits()) {
      const auto& lim = p.resources().limits();
      if ((lim.has_cpu() && (!IsFinitePositive(lim.cpu()) || lim.cpu() < requests.cpu() ||
                             lim.cpu() > limits.max_cpu_per_group)) ||
          (lim.has_memory_in_gb() && (!IsFinitePositive(lim.memory_in_gb()) ||
                                      lim.memory_in_gb() < requests.memory_in_gb() ||
                                      lim.memory_in_gb() > limits.max_memory_gb_per_group))) {
        return Error(ErrorKind::kInvalidResourceRequests,
                     "The limits of container '" + container->name() +
                         "' must be at least its requests and at most the group maximum.",
                     where + ".properties.resources.limits");
      }
    }
    total_cpu += requests.cpu();
    total_memory += requests.memory_in_gb();
    for (int j = 0; j < p.ports_size(); ++j) {
      std::string field = where + ".properties.ports[" + std::to_string(j) + "]";
      if (!p.ports(j).has_port()) return Error(ErrorKind::kInvalidPort, "Each container port needs a 'port'.", field);
      if (auto e = CheckPort(p.ports(j).port(), limits, field)) return e;
      std::string* protocol = container->mutable_properties()->mutable_ports(j)->mutable_protocol();
      if (auto e = CanonicalEnum(protocol, {"TCP", "UDP"}, "TCP", field + ".protocol")) return e;
      container_ports.insert(p.ports(j).port());
    }
    if (auto e = CheckEnvironment(p.environment_variables(), where + ".properties.environmentVariables")) return e;
    if (auto e = CheckMounts(p.volume_mounts(), volume_names, where + ".properties.volumeMounts")) return e;
    if (p.has_liveness_probe()) {
      if (auto e = CheckProbe(p.liveness_probe(), where + ".properties.livenessProbe")) return e;
    }
    if (p.has_readiness_probe()) {
      if (auto e = CheckProbe(p.readiness_probe(), where + ".properties.readinessProbe")) return e;
    }
  }
  if (total_cpu > limits.max_cpu_per_group + 1e-9 || total_memory > limits.max_memory_gb_per_group + 1e-9) {
    char buffer[256];
    std::snprintf(buffer, sizeof buffer,
                  "The group requests %.2f CPU and %.1f GB; this deployment allows at most %.2f CPU and %.1f GB per "
                  "group.",
                  total_cpu, total_memory, limits.max_cpu_per_group, limits.max_memory_gb_per_group);
    return Error(ErrorKind::kResourceRequestsExceedLimit, buffer, "properties.containers");
  }

  for (int i = 0; i < props->init_containers_size(); ++i) {
    const auto& init = props->init_containers(i);
    std::string where = "properties.initContainers[" + std::to_string(i) + "]";
    if (!IsValidAciName(init.name())) {
      return Error(ErrorKind::kInvalidContainerName, "The init container name '" + init.name() + "' is invalid.",
                   where + ".name");
    }
    if (!container_names.insert(init.name()).second) {
      return Error(ErrorKind::kDuplicateContainerName,
                   "The container name '" + init.name() + "' is used more than once in the group.", where + ".name");
    }
    if (!IsValidImageReference(init.properties().image())) {
      return Error(ErrorKind::kInvalidImage, "The image '" + init.properties().image() + "' is not a valid reference.",
                   where + ".properties.image");
    }
    if (auto e = CheckEnvironment(init.properties().environment_variables(), where + ".properties.environmentVariables")) {
      return e;
    }
    if (auto e = CheckMounts(init.properties().volume_mounts(), volume_names, where + ".properties.volumeMounts")) {
      return e;
    }
  }

  if (props->has_ip_address()) {
    auto* ip = props->mutable_ip_address();
    if (auto e = CanonicalEnum(ip->mutable_type(), {"Public", "Private"}, "Public", "properties.ipAddress.type")) return e;
    if (ip->ports_size() == 0) {
      return Error(ErrorKind::kInvalidIpAddress, "An IP address needs at least one port.", "properties.ipAddress.ports");
    }
    if (ip->ports_size() > limits.max_ports_per_ip) {
      return Error(ErrorKind::kTooManyPorts,
                   "An IP address can expose at most " + std::to_string(limits.max_ports_per_ip) + " ports; " +
                       std::to_string(ip->ports_size()) + " were given.",
                   "properties.ipAddress.ports");
    }
    std::set<std::pair<int, std::string>> seen;
    for (int j = 0; j < ip->ports_size(); ++j) {
      std::string field = "properties.ipAddress.ports[" + std::to_string(j) + "]";
      auto* port = ip->mutable_ports(j);
      if (!port->has_port()) return Error(ErrorKind::kInvalidPort, "Each IP address port needs a 'port'.", field);
      if (auto e = CheckPort(port->port(), limits, field)) return e;
      if (auto e = CanonicalEnum(port->mutable_protocol(), {"TCP", "UDP"}, "TCP", field + ".protocol")) return e;
      if (!seen.insert({port->port(), port->protocol()}).second) {
        return Error(ErrorKind::kInvalidPort, "The port " + std::to_string(port->port()) + " is listed twice.", field);
      }
      if (container_ports.count(port->port()) == 0) {
        return Error(ErrorKind::kInvalidPort,
                     "The IP address port " + std::to_string(port->port()) + " is not exposed by any container.", field);
      }
    }
    if (!ip->dns_name_label().empty()) {
      if (!IsValidAciName(ip->dns_name_label())) {
        return Error(ErrorKind::kInvalidIpAddress,
                     "The DNS name label '" + ip->dns_name_label() +
                         "' is invalid: use 1-63 lower-case letters, digits and single hyphens, not at either end.",
                     "properties.ipAddress.dnsNameLabel");
      }
      if (ip->type() == "Private") {
        return Error(ErrorKind::kInvalidIpAddress, "A DNS name label needs a Public IP address.",
                     "properties.ipAddress.dnsNameLabel");
      }
    }
    if (auto e = CanonicalEnum(ip->mutable_auto_generated_domain_name_label_scope(),
                               {"Unsecure", "TenantReuse", "SubscriptionReuse", "ResourceGroupReuse", "Noreuse"},
                               "Unsecure", "properties.ipAddress.autoGeneratedDomainNameLabelScope")) {
      return e;
    }
    // Server-assigned fields are never taken from the client.
    ip->clear_ip();
    ip->clear_fqdn();
  }
  for (int i = 0; i < props->image_registry_credentials_size(); ++i) {
    const auto& cred = props->image_registry_credentials(i);
    if (cred.server().empty() || (cred.username().empty() && cred.identity().empty())) {
      return Error(ErrorKind::kInvalidImage,
                   "Each image registry credential needs a 'server' and a 'username' or 'identity'.",
                   "properties.imageRegistryCredentials[" + std::to_string(i) + "]");
    }
  }
  return std::nullopt;
}

}  // namespace skiff::gateway
