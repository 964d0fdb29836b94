#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace skiff::config {

// Service configuration: an INI file (sections become dotted prefixes: [gateway] listen=... is
// "gateway.listen") with environment overrides. SKIFF_GATEWAY_LISTEN overrides
// "gateway.listen", so the local stack, tests and containers can change one value without a file.
class Config {
 public:
  Config() = default;
  explicit Config(std::map<std::string, std::string> values) : values_(std::move(values)) {}

  // Throws std::runtime_error when the file cannot be read or parsed.
  static Config FromFile(const std::string& path);

  void Set(const std::string& key, std::string value) { values_[key] = std::move(value); }

  std::optional<std::string> Find(const std::string& key) const;
  std::string GetString(const std::string& key, const std::string& fallback) const;
  // Throws std::runtime_error naming the key when it is missing.
  std::string Require(const std::string& key) const;
  long GetInt(const std::string& key, long fallback) const;
  double GetDouble(const std::string& key, double fallback) const;
  bool GetBool(const std::string& key, bool fallback) const;
  // Comma-separated list, items trimmed, empty items dropped.
  std::vector<std::string> GetList(const std::string& key, const std::vector<std::string>& fallback) const;

  // The environment variable that overrides `key`: SKIFF_ + upper-case, '.' and '-' as '_'.
  static std::string EnvName(const std::string& key);

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace skiff::config
