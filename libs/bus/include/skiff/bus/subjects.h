#pragma once

#include <optional>
#include <string>
#include <string_view>

// NATS subjects that name their publisher. nats-server lets a node publish only subjects that
// end in its own id (see docs/security.md), so a consumer that checks the id in the subject
// against the id in the message knows which node sent it: no node can speak for another.
namespace skiff::subjects {

// skiff.events.<family>.<kind>.<node id>: a node's container and sandbox events and its image
// cache's image events (family "container", "sandbox" or "image"; kind lower-case).
inline std::string NodeEvent(std::string_view family, std::string_view kind, std::string_view node_id) {
  return "skiff.events." + std::string(family) + "." + std::string(kind) + "." + std::string(node_id);
}

struct NodeEventSubject {
  std::string family;
  std::string kind;
  std::string node_id;
};

inline std::optional<NodeEventSubject> ParseNodeEvent(std::string_view subject) {
  constexpr std::string_view kRoot = "skiff.events.";
  if (subject.substr(0, kRoot.size()) != kRoot) return std::nullopt;
  subject.remove_prefix(kRoot.size());
  const size_t first = subject.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  const size_t second = subject.find('.', first + 1);
  if (second == std::string_view::npos || subject.find('.', second + 1) != std::string_view::npos) return std::nullopt;
  NodeEventSubject parsed{std::string(subject.substr(0, first)), std::string(subject.substr(first + 1, second - first - 1)),
                          std::string(subject.substr(second + 1))};
  if (parsed.family.empty() || parsed.kind.empty() || parsed.node_id.empty()) return std::nullopt;
  return parsed;
}

// Core NATS, every few seconds: skiff.node.heartbeat.<node id> and skiff.node.usage.<node id>.
inline std::string Heartbeat(std::string_view node_id) { return "skiff.node.heartbeat." + std::string(node_id); }
inline std::string Usage(std::string_view node_id) { return "skiff.node.usage." + std::string(node_id); }
inline constexpr std::string_view kEveryHeartbeat = "skiff.node.heartbeat.*";
inline constexpr std::string_view kEveryUsage = "skiff.node.usage.*";

// The last token of a subject: the publisher of a per-node subject.
inline std::string_view LastToken(std::string_view subject) {
  const size_t dot = subject.rfind('.');
  return dot == std::string_view::npos ? subject : subject.substr(dot + 1);
}

// Whether a per-node subject was published under the credential of `node_id` (the id the
// message itself claims): a message that claims another node's id is dropped.
inline bool PublishedBy(std::string_view subject, std::string_view node_id) {
  return !node_id.empty() && LastToken(subject) == node_id;
}

// An exec or attach session's data, between the gateway and the node that serves it:
// skiff.stream.<node id>.<session>.out (node → gateway) and .in (gateway → node).
inline std::string StreamOut(std::string_view node_id, std::string_view session) {
  return "skiff.stream." + std::string(node_id) + "." + std::string(session) + ".out";
}
inline std::string StreamIn(std::string_view node_id, std::string_view session) {
  return "skiff.stream." + std::string(node_id) + "." + std::string(session) + ".in";
}

}  // namespace skiff::subjects
