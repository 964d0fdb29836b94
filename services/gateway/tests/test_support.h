#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "skiff/containerinstance/v1/container_group.pb.h"
#include "skiff/gateway/group_codec.h"

namespace skiff::gateway {

inline std::string ReadTestData(const std::string& name) {
  std::ifstream in(std::string(SKIFF_TESTDATA_DIR) + "/" + name);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline containerinstance::v1::ContainerGroup LoadGroup(const std::string& name) {
  auto parsed = ParseGroupJson(ReadTestData(name));
  return std::get<containerinstance::v1::ContainerGroup>(parsed);
}

}  // namespace skiff::gateway
