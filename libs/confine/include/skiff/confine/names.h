#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

// The rules every name and path from a tenant's request must pass before any service uses it.
// The gateway refuses what fails them with a 400; the node checks the same rules again before
// it builds anything on the host from them (it trusts no message it did not validate itself).
namespace skiff::confine {

// ACI's resource names (groups, containers, volumes, DNS labels): 1-63 lower-case letters,
// digits and single hyphens, not at either end.
bool IsAciName(std::string_view name);
// Azure storage account names: 3-24 lower-case letters and digits.
bool IsStorageAccountName(std::string_view name);
// Azure file share names: 3-63 lower-case letters, digits and single hyphens, starting and
// ending with a letter or digit.
bool IsShareName(std::string_view name);
// One path component that stays where it is put: not empty, not "." or "..", no '/' or NUL,
// at most 255 bytes.
bool IsFileName(std::string_view name);

// The non-empty components of a '/'-separated path, in order ("a//b/" -> {"a", "b"}).
std::vector<std::string_view> PathComponents(std::string_view path);

// nullopt when `path` is an absolute container path Skiff may mount a volume on: no "..",
// ":" or NUL, not "/", and not /proc, /sys, /dev or anything beneath them (the runtime owns
// those). Otherwise why not, as a sentence.
std::optional<std::string> CheckMountPath(std::string_view path);
// nullopt when `path` is a relative path that stays beneath its base: not absolute, no ".."
// component, no NUL. Empty and "." mean the base itself.
std::optional<std::string> CheckRelativePath(std::string_view path);
// nullopt when `url` is a repository Skiff may clone: https://host/..., or http:// to a host
// listed in `insecure_hosts` ("host" or "host:port"). No credentials-in-options tricks: the
// URL may not start with '-' and may hold no whitespace or control characters.
std::optional<std::string> CheckGitRepository(std::string_view url, const std::vector<std::string>& insecure_hosts);

}  // namespace skiff::confine
