#include "skiff/imagecache/blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace skiff::imagecache {
namespace fs = std::filesystem;

bool BlobStore::IsValidDigest(const std::string& digest) {
  if (digest.size() != 71 || digest.rfind("sha256:", 0) != 0) return false;
  for (size_t i = 7; i < digest.size(); ++i) {
    char c = digest[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

BlobStore::BlobStore(std::string root) : root_(std::move(root)) {
  fs::create_directories(root_ + "/blobs/sha256");
  fs::remove_all(root_ + "/tmp");  // half-written blobs of an earlier run are discarded
  fs::create_directories(root_ + "/tmp");
}

std::string BlobStore::PathOf(const std::string& digest) const { return root_ + "/blobs/sha256/" + digest.substr(7); }

bool BlobStore::Has(const std::string& digest) const { return IsValidDigest(digest) && fs::exists(PathOf(digest)); }

int64_t BlobStore::SizeOf(const std::string& digest) const {
  std::error_code ec;
  auto size = fs::file_size(PathOf(digest), ec);
  return ec ? -1 : static_cast<int64_t>(size);
}

std::unique_ptr<BlobStore::Writer> BlobStore::Begin(const std::string& digest) {
  if (!IsValidDigest(digest)) return nullptr;
  std::string temp = root_ + "/tmp/" + digest.substr(7) + "." + crypto::NewUuid();
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return nullptr;
  return std::make_unique<Writer>(*this, digest, temp, fd);
}

void BlobStore::Remove(const std::string& digest) {
  if (!IsValidDigest(digest)) return;
  std::error_code ec;
  fs::remove(PathOf(digest), ec);
}

std::vector<std::string> BlobStore::List() const {
  std::vector<std::string> digests;
  for (const auto& entry : fs::directory_iterator(root_ + "/blobs/sha256")) {
    digests.push_back("sha256:" + entry.path().filename().string());
  }
  return digests;
}

std::optional<PullError> BlobStore::Put(const std::string& digest, const std::string& content) {
  auto writer = Begin(digest);
  if (!writer) return PullError{"CacheIoError", "Cannot write blob " + digest + " to the image cache."};
  if (!writer->Write(content.data(), content.size())) {
    return PullError{"CacheIoError", "Cannot write blob " + digest + " to the image cache."};
  }
  return writer->Commit();
}

std::optional<std::string> BlobStore::Read(const std::string& digest) const {
  if (!Has(digest)) return std::nullopt;
  std::ifstream in(PathOf(digest), std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

BlobStore::Writer::Writer(BlobStore& store, std::string digest, std::string temp_path, int fd)
    : store_(store), digest_(std::move(digest)), temp_path_(std::move(temp_path)), fd_(fd),
      hash_(std::make_unique<crypto::Sha256>()) {}

BlobStore::Writer::~Writer() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

bool BlobStore::Writer::Write(const char* data, size_t size) {
  hash_->Update(data, size);
  while (size > 0) {
    ssize_t n = ::write(fd_, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
    written_ += n;
  }
  return true;
}

void BlobStore::Writer::Restart() {
  hash_ = std::make_unique<crypto::Sha256>();
  written_ = 0;
  if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) {
    // The next Write fails or the digest check does; nothing half-valid is published.
  }
}

std::optional<PullError> BlobStore::Writer::Commit() {
  std::string actual = hash_->FinishDigest();
  if (actual != digest_) {
    return PullError{"DigestMismatch", "The downloaded blob has digest " + actual + " but the manifest says " + digest_ +
                                           "; it was discarded (corrupted in the registry or in transit)."};
  }
  if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    return PullError{"CacheIoError", "Cannot sync blob " + digest_ + " to disk."};
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), store_.PathOf(digest_).c_str()) != 0) {
    return PullError{"CacheIoError", "Cannot move blob " + digest_ + " into the image cache."};
  }
  committed_ = true;
  return std::nullopt;
}

}  // namespace skiff::imagecache
