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

namespace skiff::cli {

// Joins a container stream (exec or attach) at `web_socket_uri`: sends `password`, copies
// standard input to it (unless `send_input` is false) and its output to standard output until it
// closes. Returns the exit code from the close reason ("exit code <n>"), or throws Unreachable
// / std::runtime_error with the server's reason. With `forward_resize`, each SIGWINCH sends the
// terminal's new size (ResizeMessage) so the remote terminal follows the local window.
int JoinStream(const Credentials& credentials, const std::string& web_socket_uri, const std::string& password,
               bool send_input, bool forward_resize = false);

}  // namespace skiff::cli
