#include "skiff/oci/process.h"

namespace skiff::oci {

std::optional<Process> MergeProcess(const ImageProcessDefaults& image, const std::vector<std::string>& command,
                                    const std::vector<std::pair<std::string, std::string>>& env) {
  Process process;
  if (!command.empty()) {
    process.args = command;
  } else {
    process.args = image.entrypoint;
    process.args.insert(process.args.end(), image.cmd.begin(), image.cmd.end());
  }
  if (process.args.empty()) return std::nullopt;

  process.env = image.env;
  auto find = [&](const std::string& name) {
    for (auto it = process.env.begin(); it != process.env.end(); ++it) {
      if (it->compare(0, name.size() + 1, name + "=") == 0) return it;
    }
    return process.env.end();
  };
  for (const auto& [name, value] : env) {
    auto it = find(name);
    if (it != process.env.end()) {
      *it = name + "=" + value;
    } else {
      process.env.push_back(name + "=" + value);
    }
  }
  if (find("PATH") == process.env.end()) process.env.insert(process.env.begin(), std::string("PATH=") + kDefaultPath);
  process.cwd = image.working_dir.empty() ? "/" : image.working_dir;
  process.user = image.user.empty() ? "0" : image.user;
  return process;
}

}  // namespace skiff::oci
