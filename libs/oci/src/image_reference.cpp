#include "skiff/oci/image_reference.h"

#include <regex>

namespace skiff::oci {
namespace {

const std::regex& DomainPattern() {
  static const std::regex pattern(
      R"(^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$)");
  return pattern;
}

const std::regex& RemainderPattern() {
  // path[:tag][@sha256:hex]
  static const std::regex pattern(
      R"(^([a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*))"
      R"((?::([\w][\w.-]{0,127}))?(?:@(sha256:[a-f0-9]{64}))?$)");
  return pattern;
}

}  // namespace

std::string ImageReference::String() const {
  std::string out = registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

std::string ImageReference::ApiHost() const { return registry == "docker.io" ? "registry-1.docker.io" : registry; }

bool ImageReference::IsLoopbackRegistry() const {
  std::string host = registry.substr(0, registry.rfind(':') == std::string::npos ? registry.size() : registry.rfind(':'));
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]";
}

std::optional<ImageReference> ParseImageReference(const std::string& text) {
  if (text.empty() || text.size() > 4096) return std::nullopt;
  ImageReference ref;
  std::string remainder = text;
  size_t slash = text.find('/');
  if (slash != std::string::npos) {
    std::string first = text.substr(0, slash);
    if (first.find('.') != std::string::npos || first.find(':') != std::string::npos || first == "localhost") {
      if (!std::regex_match(first, DomainPattern())) return std::nullopt;
      ref.registry = first;
      remainder = text.substr(slash + 1);
    }
  }
  std::smatch match;
  if (!std::regex_match(remainder, match, RemainderPattern())) return std::nullopt;
  ref.repository = match[1];
  ref.tag = match[2];
  ref.digest = match[3];
  if (ref.registry.empty() || ref.registry == "index.docker.io") ref.registry = "docker.io";
  if (ref.registry == "docker.io" && ref.repository.find('/') == std::string::npos) {
    ref.repository = "library/" + ref.repository;
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

}  // namespace skiff::oci
