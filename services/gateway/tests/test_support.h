#pragma once

#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "skiff/containerinstance/v1/container_group.pb.h"
#include "skiff/gateway/clock.h"
#include "skiff/gateway/group_codec.h"
#include "skiff/gateway/http_types.h"

namespace skiff::gateway {

inline std::string ReadTestData(const std::string& name) {
  std::ifstream in(std::string(SKIFF_TESTDATA_DIR) + "/" + name);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The ARM error code of an error answer ("" when there is none).
inline std::string ErrorCode(const HttpResponse& response) {
  auto start = response.body.find("\"code\":\"");
  if (start == std::string::npos) return "";
  start += 8;
  return response.body.substr(start, response.body.find('"', start) - start);
}

// A request as a client holding `token` sends it to the API.
inline HttpRequest AuthorizedRequest(const std::string& token, const std::string& method, const std::string& path,
                                     const std::string& body = "") {
  HttpRequest request;
  request.method = method;
  request.target = path;
  request.headers["authorization"] = "Bearer " + token;
  request.headers["host"] = "localhost";
  request.body = body;
  return request;
}

// A clock tests move by hand.
class TestClock : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override { return now; }
  std::chrono::system_clock::time_point now{std::chrono::seconds(1700000000)};
};

// Ids 00000000-0000-4000-8000-000000000001, …002, … (UUID-shaped, predictable).
inline std::function<std::string()> SequentialIds(int* counter) {
  return [counter] {
    char id[37];
    std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012d", ++*counter);
    return std::string(id);
  };
}

inline containerinstance::v1::ContainerGroup LoadGroup(const std::string& name) {
  auto parsed = ParseGroupJson(ReadTestData(name));
  return std::get<containerinstance::v1::ContainerGroup>(parsed);
}

}  // namespace skiff::gateway
