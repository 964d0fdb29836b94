#pragma once
// tcpSocket and httpGet probes against 127.0.0.1 of a network namespace: on a runc node the
// group's namespace (which its containers share), in a microVM's guest the guest's own (the
// agent runs them there, since the host side of a microVM group's namespace only carries frames).
#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace skiff::node {

struct ProbeResult {
  bool success = false;
  std::string message;  // why it failed
};

struct SocketProbeSpec {
  int port = 0;
  bool http = false;  // httpGet; else tcpSocket (connect only)
  std::string path = "/";
  std::string scheme = "http";
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds timeout{1000};
};

// Moves the calling thread into the network namespace at `path` (namespaces are per thread: call
// it on a thread of its own). False with `error` set when it cannot.
bool JoinNetworkNamespace(const std::string& path, std::string* error);

// A non-blocking TCP connection to 127.0.0.1:port inside `netns_path` (empty: this process's
// namespace). -1 with `error` set ("dial tcp 127.0.0.1:PORT: …", as Kubernetes words it).
int ConnectInNamespace(const std::string& netns_path, int port, std::chrono::milliseconds timeout, std::string* error);

// Connects and, for httpGet, sends the GET and judges the status (200–399 passes).
ProbeResult ProbeSocket(const std::string& netns_path, const SocketProbeSpec& spec);

}  // namespace skiff::node
