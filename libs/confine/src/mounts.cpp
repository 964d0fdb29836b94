#include "skiff/confine/mounts.h"

#include <sys/mount.h>

#include <algorithm>
#include <fstream>

namespace skiff::confine {
namespace {

std::vector<std::string> MountPoints() {
  std::vector<std::string> points;
  std::ifstream mounts("/proc/self/mountinfo");
  for (std::string line; std::getline(mounts, line);) {
    // Field 5 is the mount point (spaces escaped as \040; Skiff's own paths have none).
    size_t at = 0;
    for (int field = 0; field < 4 && at != std::string::npos; ++field) at = line.find(' ', at + 1);
    if (at == std::string::npos) continue;
    const size_t end = line.find(' ', at + 1);
    points.push_back(line.substr(at + 1, end == std::string::npos ? std::string::npos : end - at - 1));
  }
  return points;
}

}  // namespace

bool IsMountPoint(const std::string& path) {
  auto points = MountPoints();
  return std::find(points.begin(), points.end(), path) != points.end();
}

std::vector<std::string> MountsBeneath(const std::string& dir) {
  std::string prefix = dir;
  while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
  prefix += '/';
  std::vector<std::string> beneath;
  for (auto& point : MountPoints()) {
    if (point.size() > prefix.size() && point.compare(0, prefix.size(), prefix) == 0) beneath.push_back(std::move(point));
  }
  std::sort(beneath.begin(), beneath.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return beneath;
}

int UnmountBeneath(const std::string& dir) {
  int detached = 0;
  for (const auto& point : MountsBeneath(dir)) {
    if (::umount2(point.c_str(), MNT_DETACH) == 0) ++detached;
  }
  return detached;
}

}  // namespace skiff::confine
