#include "skiff/node/observe.h"

#include <deque>
#include <filesystem>
#include <fstream>
#include <vector>

namespace skiff::node {

std::optional<Usage> ReadUsage(const std::string& cgroup_root, const std::string& cgroup_path) {
  std::ifstream cpu(cgroup_root + "/cpuacct" + cgroup_path + "/cpuacct.usage");
  std::ifstream memory(cgroup_root + "/memory" + cgroup_path + "/memory.usage_in_bytes");
  double cpu_ns = 0, memory_bytes = 0;
  if (!(cpu >> cpu_ns) || !(memory >> memory_bytes)) return std::nullopt;
  return Usage{cpu_ns / 1e9, memory_bytes};
}

std::string ReadLogs(const std::string& log_path, int tail, bool timestamps) {
  std::vector<std::string> files;
  for (int i = 1; std::filesystem::exists(log_path + "." + std::to_string(i)); ++i) {
    files.insert(files.begin(), log_path + "." + std::to_string(i));  // oldest first
  }
  files.push_back(log_path);
  std::deque<std::string> lines;
  for (const auto& file : files) {
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
      // "<time> <stream> <text>"
      size_t first = line.find(' ');
      size_t second = first == std::string::npos ? std::string::npos : line.find(' ', first + 1);
      if (second == std::string::npos) continue;
      lines.push_back(timestamps ? line.substr(0, first) + " " + line.substr(second + 1) : line.substr(second + 1));
      if (tail > 0 && static_cast<int>(lines.size()) > tail) lines.pop_front();
    }
  }
  std::string content;
  for (const auto& line : lines) content += line + "\n";
  return content;
}

}  // namespace skiff::node
