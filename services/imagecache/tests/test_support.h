#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "skiff/crypto/crypto.h"
#include "skiff/imagecache/http_client.h"

namespace skiff::imagecache::testing {

struct TarEntry {
  std::string path;
  char type = 'f';  // f file, d dir, l symlink, h hardlink, c char device
  std::string content;  // file content, or link target
  int mode = 0644;
};

// A tar (optionally gzip-compressed) built with libarchive.
inline std::string MakeTar(const std::vector<TarEntry>& entries, bool gzip = true, bool zstd = false) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (zstd) {
    archive_write_add_filter_zstd(a);
  } else if (gzip) {
    archive_write_add_filter_gzip(a);
  }
  std::vector<char> buffer(1 << 22);
  size_t used = 0;
  archive_write_open_memory(a, buffer.data(), buffer.size(), &used);
  for (const auto& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_perm(entry, e.mode);
    switch (e.type) {
      case 'd': archive_entry_set_filetype(entry, AE_IFDIR); break;
      case 'l': archive_entry_set_filetype(entry, AE_IFLNK); archive_entry_set_symlink(entry, e.content.c_str()); break;
      case 'h': archive_entry_set_filetype(entry, AE_IFREG); archive_entry_set_hardlink(entry, e.content.c_str()); break;
      case 'c': archive_entry_set_filetype(entry, AE_IFCHR); archive_entry_set_rdev(entry, 0x0103); break;
      default:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_size(entry, static_cast<la_int64_t>(e.content.size()));
    }
    archive_write_header(a, entry);
    if (e.type == 'f' && !e.content.empty()) archive_write_data(a, e.content.data(), e.content.size());
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
  return std::string(buffer.data(), used);
}

inline std::string DigestOf(const std::string& data) { return "sha256:" + crypto::Sha256Hex(data); }

// An in-memory OCI registry behind the HttpClient port, with switchable misbehaviour.
class FakeRegistry : public HttpClient {
 public:
  std::string host = "registry.test";
  std::map<std::string, std::pair<std::string, std::string>> manifests;  // repo:ref -> (type, body)
  std::map<std::string, std::string> blobs;                               // digest -> data
  std::string bearer_token;          // when set, requests need it (token from https://auth.test/token)
  std::string basic;                 // when set, requests need "Basic <b64>"
  bool redirect_blobs = false;       // blobs answer 307 to https://storage.test/<digest>
  int break_blob_after = -1;         // the first GET of a blob ends after this many bytes
  bool ignore_range = false;
  std::map<std::string, int> blob_gets;
  std::vector<std::string> requests;  // "GET url [Authorization]"
  std::mutex mutex;

  HttpResult Get(const Url& url, const std::vector<std::pair<std::string, std::string>>& headers,
                 const BodySink* sink) override {
    std::string auth, range;
    for (const auto& [k, v] : headers) {
      if (k == "Authorization") auth = v;
      if (k == "Range") range = v;
    }
    {
      std::lock_guard lock(mutex);
      requests.push_back(url.String() + " " + auth);
    }
    HttpResult r;
    if (url.host == "auth.test") {
      if (!basic.empty() && auth != basic) return Status(401);
      r.status = 200;
      r.body = "{\"token\":\"" + bearer_token + "\"}";
      return r;
    }
    if (url.host == "storage.test") return Blob(url.target.substr(1), range, sink);
    if (url.host != host) return Status(0);
    if (!bearer_token.empty() && auth != "Bearer " + bearer_token) {
      r.status = 401;
      r.headers["www-authenticate"] =
          "Bearer realm=\"https://auth.test/token\",service=\"registry.test\",scope=\"repository:x:pull\"";
      return r;
    }
    if (bearer_token.empty() && !basic.empty() && auth != basic) {
      r.status = 401;
      r.headers["www-authenticate"] = "Basic realm=\"registry\"";
      return r;
    }
    const std::string& t = url.target;
    auto m = t.find("/manifests/");
    if (m != std::string::npos) {
      std::string key = t.substr(4, m - 4) + ":" + t.substr(m + 11);
      auto it = manifests.find(key);
      if (it == manifests.end()) return Status(404);
      r.status = 200;
      r.headers["content-type"] = it->second.first;
      r.body = it->second.second;
      return r;
    }
    auto b = t.find("/blobs/");
    if (b != std::string::npos) {
      std::string digest = t.substr(b + 7);
      if (redirect_blobs) {
        r.status = 307;
        r.headers["location"] = "https://storage.test/" + digest;
        return r;
      }
      return Blob(digest, range, sink);
    }
    return Status(404);
  }

  static HttpResult Status(int status) {
    HttpResult r;
    r.status = status;
    if (status == 0) r.error = "connection refused";
    return r;
  }

  HttpResult Blob(const std::string& digest, const std::string& range, const BodySink* sink) {
    auto it = blobs.find(digest);
    if (it == blobs.end()) return Status(404);
    int gets;
    {
      std::lock_guard lock(mutex);
      gets = ++blob_gets[digest];
    }
    std::string data = it->second;
    HttpResult r;
    r.status = 200;
    if (!range.empty() && !ignore_range) {
      size_t from = std::stoul(range.substr(6));
      data = data.substr(from);
      r.status = 206;
    }
    if (gets == 1 && break_blob_after >= 0 && static_cast<size_t>(break_blob_after) < data.size()) {
      data = data.substr(0, static_cast<size_t>(break_blob_after));
      r.body_complete = false;
      r.error = "connection reset";
    }
    if (sink && !data.empty()) (*sink)(r.status, data.data(), data.size());
    return r;
  }

  // Adds an image of `layers` (tar blobs) under repo:tag; returns the manifest digest.
  std::string AddImage(const std::string& repo, const std::string& tag, const std::vector<std::string>& layers,
                       const std::string& config_json = R"({"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"],"Env":["PATH=/bin"]}})") {
    std::string config_digest = DigestOf(config_json);
    blobs[config_digest] = config_json;
    std::string body = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
                       config_digest + R"(","size":)" + std::to_string(config_json.size()) + R"(},"layers":[)";
    for (size_t i = 0; i < layers.size(); ++i) {
      std::string digest = DigestOf(layers[i]);
      blobs[digest] = layers[i];
      body += std::string(i ? "," : "") + R"({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" +
              digest + R"(","size":)" + std::to_string(layers[i].size()) + "}";
    }
    body += "]}";
    manifests[repo + ":" + tag] = {"application/vnd.oci.image.manifest.v1+json", body};
    manifests[repo + ":" + DigestOf(body)] = manifests[repo + ":" + tag];
    return DigestOf(body);
  }
};

}  // namespace skiff::imagecache::testing
