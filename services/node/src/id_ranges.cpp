#include "skiff/node/id_ranges.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

namespace skiff::node {
namespace fs = std::filesystem;

IdRangeAllocator::IdRangeAllocator(UserNamespaceOptions options, std::string owner)
    : options_(std::move(options)), owner_(std::move(owner)) {
  // Never past the last id the kernel has (4294967294; -1 means "no id").
  const uint64_t room = (uint64_t{std::numeric_limits<uint32_t>::max()} - options_.first_host_id) /
                        std::max<uint32_t>(options_.range_size, 1);
  if (options_.ranges > room) options_.ranges = static_cast<uint32_t>(room);
  if (options_.claims_dir.empty()) return;
  std::error_code ec;
  fs::create_directories(options_.claims_dir, ec);
  for (const auto& entry : fs::directory_iterator(options_.claims_dir, ec)) {
    uint32_t index = 0;
    try {
      index = static_cast<uint32_t>(std::stoul(entry.path().filename().string()));
    } catch (const std::exception&) {
      continue;
    }
    std::ifstream in(entry.path());
    std::string claimant, group_id;
    if (!(in >> claimant >> group_id) || claimant != owner_ || index >= options_.ranges) continue;
    held_[group_id] = index;
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

std::string IdRangeAllocator::ClaimPath(uint32_t index) const {
  return options_.claims_dir + "/" + std::to_string(index);
}

bool IdRangeAllocator::Claim(uint32_t index, const std::string& group_id) {
  for (const auto& [held_by, taken] : held_) {
    if (taken == index) return false;
  }
  if (options_.claims_dir.empty()) return true;
  // O_EXCL: of all the nodes on this host, exactly one gets the range.
  int fd = ::open(ClaimPath(index).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return false;
  const std::string line = owner_ + " " + group_id + "\n";
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!written) ::unlink(ClaimPath(index).c_str());
  return written;
}

std::optional<confine::IdRange> IdRangeAllocator::Acquire(const std::string& group_id) {
  std::lock_guard lock(mutex_);
  if (auto it = held_.find(group_id); it != held_.end()) return RangeAt(it->second);
  const uint32_t first = PreferredIndex(group_id);
  for (uint32_t step = 0; step < options_.ranges; ++step) {
    const uint32_t index = (first + step) % options_.ranges;
    if (Claim(index, group_id)) {
      held_[group_id] = index;
      return RangeAt(index);
    }
  }
  return std::nullopt;
}

void IdRangeAllocator::Release(const std::string& group_id) {
  std::lock_guard lock(mutex_);
  auto it = held_.find(group_id);
  if (it == held_.end()) return;
  if (!options_.claims_dir.empty()) ::unlink(ClaimPath(it->second).c_str());
  held_.erase(it);
}

void IdRangeAllocator::ReleaseUnless(const std::function<bool(const std::string& group_id)>& keep) {
  std::vector<std::string> dropped;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [group_id, index] : held_) {
      if (!keep(group_id)) dropped.push_back(group_id);
    }
  }
  for (const auto& group_id : dropped) Release(group_id);
}

std::optional<confine::IdRange> IdRangeAllocator::Transfer(const std::string& from, const std::string& to) {
  std::lock_guard lock(mutex_);
  auto it = held_.find(from);
  if (it == held_.end() || held_.count(to)) return std::nullopt;
  const uint32_t index = it->second;
  if (!options_.claims_dir.empty()) {
    const std::string temp = ClaimPath(index) + ".tmp-" + std::to_string(::getpid());
    {
      std::ofstream out(temp, std::ios::trunc);
      out << owner_ << " " << to << "\n";
      if (!out.flush()) return std::nullopt;
    }
    std::error_code ec;
    fs::rename(temp, ClaimPath(index), ec);  // the claim stays this node's throughout
    if (ec) return std::nullopt;
  }
  held_.erase(it);
  held_[to] = index;
  return RangeAt(index);
}

std::optional<confine::IdRange> IdRangeAllocator::Held(const std::string& group_id) const {
  std::lock_guard lock(mutex_);
  auto it = held_.find(group_id);
  if (it == held_.end()) return std::nullopt;
  return RangeAt(it->second);
}

}  // namespace skiff::node
