#include "skiff/confine/names.h"

#include <algorithm>

namespace skiff::confine {
namespace {

bool IsLowerOrDigit(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Lower-case letters, digits and single hyphens, not at either end, `min`-`max` long.
bool IsHyphenatedName(std::string_view name, size_t min, size_t max) {
  if (name.size() < min || name.size() > max) return false;
  if (name.front() == '-' || name.back() == '-') return false;
  char previous = 0;
  for (char c : name) {
    if (!IsLowerOrDigit(c) && c != '-') return false;
    if (c == '-' && previous == '-') return false;
    previous = c;
  }
  return true;
}

bool HasControlCharacter(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

}  // namespace

std::vector<std::string_view> PathComponents(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > start) parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

bool IsAciName(std::string_view name) { return IsHyphenatedName(name, 1, 63); }

bool IsStorageAccountName(std::string_view name) {
  return name.size() >= 3 && name.size() <= 24 && std::all_of(name.begin(), name.end(), IsLowerOrDigit);
}

bool IsShareName(std::string_view name) { return IsHyphenatedName(name, 3, 63); }

bool IsFileName(std::string_view name) {
  return !name.empty() && name.size() <= 255 && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

std::optional<std::string> CheckMountPath(std::string_view path) {
  if (path.empty() || path.front() != '/') return "must be an absolute path";
  if (path.size() > 4096) return "is longer than 4096 characters";
  if (path.find(':') != std::string_view::npos || HasControlCharacter(path)) {
    return "may not hold ':' or control characters";
  }
  auto parts = PathComponents(path);
  for (auto part : parts) {
    if (part == "..") return "may not hold '..'";
    if (part == ".") return "may not hold '.' components";
  }
  if (parts.empty()) return "may not be the container's root";
  for (std::string_view reserved : {"proc", "sys", "dev"}) {
    if (parts.front() == reserved) return "may not be /" + std::string(reserved) + " or beneath it";
  }
  return std::nullopt;
}

std::optional<std::string> CheckRelativePath(std::string_view path) {
  if (path.empty()) return std::nullopt;
  if (path.front() == '/') return "must be relative";
  if (path.size() > 4096) return "is longer than 4096 characters";
  if (HasControlCharacter(path)) return "may not hold control characters";
  for (auto part : PathComponents(path)) {
    if (part == "..") return "may not hold '..'";
  }
  return std::nullopt;
}

std::optional<std::string> CheckGitRepository(std::string_view url, const std::vector<std::string>& insecure_hosts) {
  if (url.size() > 2048) return "is longer than 2048 characters";
  if (HasControlCharacter(url) || url.find(' ') != std::string_view::npos) {
    return "may not hold spaces or control characters";
  }
  std::string_view rest;
  bool https = false;
  if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
    https = true;
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return "must be an https:// URL";
  }
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) return "may not carry credentials in the URL";
  if (authority.empty() || authority.front() == '-' || authority.front() == ':') return "needs a host";
  for (char c : authority) {
    bool ok = IsLowerOrDigit(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
    if (!ok) return "has an invalid host";
  }
  if (https) return std::nullopt;
  std::string_view host = authority;
  if (host.front() != '[') host = host.substr(0, host.rfind(':') == std::string_view::npos ? host.size() : host.rfind(':'));
  for (const auto& allowed : insecure_hosts) {
    if (allowed == authority || allowed == host) return std::nullopt;
  }
  return "must be an https:// URL (http:// only to hosts this installation lists as insecure)";
}

}  // namespace skiff::confine
