#include "skiff/node/socket_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace skiff::node {
using std::chrono::milliseconds;

bool JoinNetworkNamespace(const std::string& path, std::string* error) {
  int ns = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
    *error = "cannot enter the network namespace " + path + ": " + std::strerror(errno);
    if (ns >= 0) ::close(ns);
    return false;
  }
  ::close(ns);
  return true;
}

int ConnectInNamespace(const std::string& netns_path, int port, milliseconds timeout, std::string* error) {
  // A socket belongs to the network namespace of the thread that created it: make it on a
  // short-lived thread that joined the group's namespace, then use it from here.
  int fd = -1;
  std::thread maker([&] {
    if (!netns_path.empty() && !JoinNetworkNamespace(netns_path, error)) return;
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) *error = std::string("socket: ") + std::strerror(errno);
  });
  maker.join();
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd waiting{fd, POLLOUT, 0};
    rc = ::poll(&waiting, 1, static_cast<int>(timeout.count()));
    if (rc == 0) {
      *error = "dial tcp 127.0.0.1:" + std::to_string(port) + ": i/o timeout";
      ::close(fd);
      return -1;
    }
    int so_error = 0;
    socklen_t length = sizeof so_error;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length);
    errno = so_error;
    rc = so_error == 0 ? 0 : -1;
  }
  if (rc != 0) {
    *error = "dial tcp 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

ProbeResult ProbeSocket(const std::string& netns_path, const SocketProbeSpec& spec) {
  std::string error;
  const auto deadline = std::chrono::steady_clock::now() + spec.timeout;
  int fd = ConnectInNamespace(netns_path, spec.port, spec.timeout, &error);
  if (fd < 0) return {false, error};
  if (!spec.http) {
    ::close(fd);
    return {true, {}};
  }
  if (spec.scheme == "https" || spec.scheme == "HTTPS") {
    ::close(fd);
    return {false, "https probes are not supported on this node"};
  }
  std::string request = "GET " + spec.path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(spec.port) +
                        "\r\nUser-Agent: skiff-probe/1.0\r\nAccept: */*\r\nConnection: close\r\n";
  for (const auto& [name, value] : spec.headers) request += name + ": " + value + "\r\n";
  request += "\r\n";
  auto remaining = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  };
  size_t sent = 0;
  while (sent < request.size()) {
    pollfd waiting{fd, POLLOUT, 0};
    if (::poll(&waiting, 1, remaining()) <= 0) break;
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string response;
  while (response.find("\r\n") == std::string::npos && response.size() < 4096) {
    pollfd waiting{fd, POLLIN, 0};
    if (::poll(&waiting, 1, remaining()) <= 0) break;
    char buffer[1024];
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  // "HTTP/1.1 200 OK"
  if (response.rfind("HTTP/", 0) != 0 || response.find(' ') == std::string::npos) {
    return {false, sent < request.size() || response.empty() ? "no HTTP response within the timeout"
                                                              : "the answer is not HTTP"};
  }
  int status = std::atoi(response.c_str() + response.find(' ') + 1);
  if (status >= 200 && status < 400) return {true, {}};
  return {false, "HTTP probe failed with statuscode: " + std::to_string(status)};
}

}  // namespace skiff::node
