#pragma once

#include <stdexcept>
#include <string>

#include "skiff/cli/cli.h"

namespace skiff::cli {

// The Skiff API could not be reached (refused, TLS failure, timeout): a message for the user.
class Unreachable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One HTTPS request per call (Boost.Beast, verified against `ca_file` or the system's CAs).
Answer Call(const Credentials& credentials, const std::string& method, const std::string& path_and_query,
            const std::string& body = "");

}  // namespace skiff::cli
