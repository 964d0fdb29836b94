#include "skiff/node/id_ranges.h"

#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

namespace skiff::node {
namespace fs = std::filesystem;

IdRangeAllocator::IdRangeAllocator(UserNamespaceOptions options, std::string state_dir) : options_(options) {
  // Never past the last id the kernel has (4294967294; -1 means "no id").
  const uint64_t room = (uint64_t{std::numeric_limits<uint32_t>::max()} - options_.first_host_id) /
                        std::max<uint32_t>(options_.range_size, 1);
  if (options_.ranges > room) options_.ranges = static_cast<uint32_t>(room);
  if (state_dir.empty()) return;
  dir_ = state_dir + "/ids";
  std::error_code ec;
  fs::create_directories(dir_, ec);
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    std::ifstream in(entry.path());
    uint64_t index = 0;
    if (!(in >> index) || index >= options_.ranges || by_index_.count(static_cast<uint32_t>(index))) continue;
    const std::string group_id = entry.path().filename().string();
    held_[group_id] = static_cast<uint32_t>(index);
    by_index_[static_cast<uint32_t>(index)] = group_id;
  }
}

confine::IdRange IdRangeAllocator::RangeAt(uint32_t index) const {
  return {options_.first_host_id + index * options_.range_size, options_.range_size};
}

uint32_t IdRangeAllocator::PreferredIndex(const std::string& group_id) const {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a: stable across processes and builds
  for (unsigned char c : group_id) hash = (hash ^ c) * 1099511628211ull;
  return options_.ranges == 0 ? 0 : static_cast<uint32_t>(hash % options_.ranges);
}

confine::IdRange IdRangeAllocator::Preferred(const std::string& group_id) const {
  return RangeAt(PreferredIndex(group_id));
}

std::optional<confine::IdRange> IdRangeAllocator::Acquire(const std::string& group_id) {
  std::lock_guard lock(mutex_);
  if (auto it = held_.find(group_id); it != held_.end()) return RangeAt(it->second);
  if (by_index_.size() >= options_.ranges) return std::nullopt;
  uint32_t index = PreferredIndex(group_id);
  while (by_index_.count(index)) index = (index + 1) % options_.ranges;
  if (!dir_.empty()) {
    const std::string path = dir_ + "/" + group_id;
    {
      std::ofstream out(path + ".tmp", std::ios::trunc);
      out << index << "\n";
      if (!out.flush()) return std::nullopt;
    }
    std::error_code ec;
    fs::rename(path + ".tmp", path, ec);
    if (ec) return std::nullopt;
  }
  held_[group_id] = index;
  by_index_[index] = group_id;
  return RangeAt(index);
}

void IdRangeAllocator::Release(const std::string& group_id) {
  std::lock_guard lock(mutex_);
  auto it = held_.find(group_id);
  if (it == held_.end()) return;
  by_index_.erase(it->second);
  held_.erase(it);
  std::error_code ec;
  if (!dir_.empty()) fs::remove(dir_ + "/" + group_id, ec);
}

void IdRangeAllocator::ReleaseStartingWith(const std::string& prefix) {
  std::vector<std::string> matching;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [group_id, index] : held_) {
      if (group_id.rfind(prefix, 0) == 0) matching.push_back(group_id);
    }
  }
  for (const auto& group_id : matching) Release(group_id);
}

std::optional<confine::IdRange> IdRangeAllocator::Transfer(const std::string& from, const std::string& to) {
  std::lock_guard lock(mutex_);
  auto it = held_.find(from);
  if (it == held_.end() || held_.count(to)) return std::nullopt;
  const uint32_t index = it->second;
  if (!dir_.empty()) {
    std::error_code ec;
    fs::rename(dir_ + "/" + from, dir_ + "/" + to, ec);
    if (ec) return std::nullopt;
  }
  held_.erase(it);
  held_[to] = index;
  by_index_[index] = to;
  return RangeAt(index);
}

std::optional<confine::IdRange> IdRangeAllocator::Held(const std::string& group_id) const {
  std::lock_guard lock(mutex_);
  auto it = held_.find(group_id);
  if (it == held_.end()) return std::nullopt;
  return RangeAt(it->second);
}

}  // namespace skiff::node
