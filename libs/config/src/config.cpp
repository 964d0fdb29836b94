#include "skiff/config/config.h"

#include <boost/property_tree/ini_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <cctype>
#include <cstdlib>
#include <stdexcept>

namespace skiff::config {
namespace {

std::string Trim(const std::string& s) {
  size_t begin = 0, end = s.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(s[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  return s.substr(begin, end - begin);
}

void Flatten(const boost::property_tree::ptree& tree, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  for (const auto& [key, child] : tree) {
    std::string full = prefix.empty() ? key : prefix + "." + key;
    if (child.empty()) {
      out[full] = child.data();
    } else {
      Flatten(child, full, out);
    }
  }
}

}  // namespace

Config Config::FromFile(const std::string& path) {
  boost::property_tree::ptree tree;
  try {
    boost::property_tree::read_ini(path, tree);
  } catch (const boost::property_tree::ini_parser_error& e) {
    throw std::runtime_error("cannot read config " + path + ": " + e.what());
  }
  std::map<std::string, std::string> values;
  Flatten(tree, "", values);
  return Config(std::move(values));
}

std::string Config::EnvName(const std::string& key) {
  std::string name = "SKIFF_";
  for (char c : key) {
    name += (c == '.' || c == '-') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

std::optional<std::string> Config::Find(const std::string& key) const {
  if (const char* env = std::getenv(EnvName(key).c_str())) return std::string(env);
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Config::GetString(const std::string& key, const std::string& fallback) const {
  return Find(key).value_or(fallback);
}

std::string Config::Require(const std::string& key) const {
  auto value = Find(key);
  if (!value || value->empty()) {
    throw std::runtime_error("missing configuration value '" + key + "' (or environment " + EnvName(key) + ")");
  }
  return *value;
}

long Config::GetInt(const std::string& key, long fallback) const {
  auto value = Find(key);
  if (!value) return fallback;
  size_t used = 0;
  long parsed = 0;
  try {
    parsed = std::stol(*value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != Trim(*value).size()) {
    throw std::runtime_error("configuration value '" + key + "' is not an integer: " + *value);
  }
  return parsed;
}

double Config::GetDouble(const std::string& key, double fallback) const {
  auto value = Find(key);
  if (!value) return fallback;
  size_t used = 0;
  double parsed = 0;
  try {
    parsed = std::stod(*value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0) throw std::runtime_error("configuration value '" + key + "' is not a number: " + *value);
  return parsed;
}

bool Config::GetBool(const std::string& key, bool fallback) const {
  auto value = Find(key);
  if (!value) return fallback;
  std::string v = Trim(*value);
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  throw std::runtime_error("configuration value '" + key + "' is not a boolean: " + *value);
}

std::vector<std::string> Config::GetList(const std::string& key, const std::vector<std::string>& fallback) const {
  auto value = Find(key);
  if (!value) return fallback;
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= value->size()) {
    size_t comma = value->find(',', start);
    if (comma == std::string::npos) comma = value->size();
    std::string item = Trim(value->substr(start, comma - start));
    if (!item.empty()) items.push_back(item);
    start = comma + 1;
  }
  return items;
}

}  // namespace skiff::config
