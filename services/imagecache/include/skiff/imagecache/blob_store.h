#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "skiff/crypto/crypto.h"
#include "skiff/imagecache/pull_error.h"

namespace skiff::imagecache {

// Content-addressed blobs on disk: <root>/blobs/sha256/<hex>. A blob is written to
// <root>/tmp first and renamed into place only after its sha256 matches, so a crash leaves
// either the whole blob or nothing (tmp is emptied at start).
class BlobStore {
 public:
  class Writer {
   public:
    Writer(BlobStore& store, std::string digest, std::string temp_path, int fd);
    ~Writer();
    bool Write(const char* data, size_t size);
    // Starts over (the registry ignored a Range request).
    void Restart();
    // Checks the digest, syncs and publishes the blob.
    std::optional<PullError> Commit();
    int64_t written() const { return written_; }

   private:
    BlobStore& store_;
    std::string digest_;
    std::string temp_path_;
    int fd_;
    int64_t written_ = 0;
    std::unique_ptr<crypto::Sha256> hash_;
    bool committed_ = false;
  };

  explicit BlobStore(std::string root);

  bool Has(const std::string& digest) const;
  std::string PathOf(const std::string& digest) const;
  int64_t SizeOf(const std::string& digest) const;
  std::unique_ptr<Writer> Begin(const std::string& digest);
  void Remove(const std::string& digest);
  std::vector<std::string> List() const;
  // Writes a small blob held in memory (manifests, configs) after checking its digest.
  std::optional<PullError> Put(const std::string& digest, const std::string& content);
  std::optional<std::string> Read(const std::string& digest) const;

  static bool IsValidDigest(const std::string& digest);

 private:
  std::string root_;
};

}  // namespace skiff::imagecache
