#include "skiff/gateway/container_streams.h"

#include <openssl/crypto.h>

#include "skiff/crypto/crypto.h"

namespace skiff::gateway {

std::string StreamTickets::Issue(StreamTicket ticket, std::chrono::steady_clock::time_point now) {
  std::string token = crypto::NewUuid();
  ticket.expires = now + lifetime_;
  std::lock_guard lock(mutex_);
  for (auto it = tickets_.begin(); it != tickets_.end();) {  // drop the expired, so unused ones cannot pile up
    it = it->second.expires <= now ? tickets_.erase(it) : std::next(it);
  }
  tickets_[token] = std::move(ticket);
  return token;
}

std::optional<StreamTicket> StreamTickets::Redeem(const std::string& token, std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = tickets_.find(token);
  if (it == tickets_.end()) return std::nullopt;
  StreamTicket ticket = std::move(it->second);
  tickets_.erase(it);
  if (ticket.expires <= now) return std::nullopt;
  return ticket;
}

void SplitUtf8(std::string& carry, const std::string& data, std::string* whole, bool* valid) {
  std::string bytes = carry + data;
  carry.clear();
  *valid = true;
  size_t i = 0, complete = 0;
  while (i < bytes.size()) {
    const auto lead = static_cast<unsigned char>(bytes[i]);
    size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xe ? 3 : (lead >> 3) == 0x1e ? 4 : 0;
    if (length == 0) {
      *valid = false;
      break;
    }
    if (i + length > bytes.size()) break;  // cut short: maybe the rest comes next time
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(bytes[i + k]) & 0xc0) != 0x80) *valid = false;
    }
    if (!*valid) break;
    i += length;
    complete = i;
  }
  if (!*valid) {
    *whole = std::move(bytes);
    return;
  }
  *whole = bytes.substr(0, complete);
  carry = bytes.substr(complete);
}

std::optional<std::pair<uint32_t, uint32_t>> ParseResize(const std::string& message) {
  constexpr std::string_view kPrefix = "\x1b[8;";
  if (message.size() < kPrefix.size() + 4 || message.compare(0, kPrefix.size(), kPrefix) != 0 ||
      message.back() != 't') {
    return std::nullopt;
  }
  uint32_t rows = 0, cols = 0;
  size_t i = kPrefix.size();
  auto number = [&](uint32_t* out) {
    size_t start = i;
    while (i < message.size() && std::isdigit(static_cast<unsigned char>(message[i])) && i - start < 5) {
      *out = *out * 10 + static_cast<uint32_t>(message[i++] - '0');
    }
    return i > start;
  };
  if (!number(&rows) || i >= message.size() || message[i++] != ';' || !number(&cols) || i != message.size() - 1) {
    return std::nullopt;
  }
  if (rows == 0 || cols == 0 || rows > 1000 || cols > 1000) return std::nullopt;
  return std::make_pair(rows, cols);
}

std::string StreamBridge::session_id() const {
  return ticket_.exec ? ticket_.exec->session_id() : ticket_.attach->session_id();
}

void StreamBridge::OnOpen(std::shared_ptr<WebSocketConnection> connection) {
  std::lock_guard lock(mutex_);
  connection_ = std::move(connection);
}

void StreamBridge::OnMessage(const std::string& data, bool) {
  std::unique_lock lock(mutex_);
  if (ended_) return;
  if (!authenticated_) {
    const std::string& expected = ticket_.password;
    if (data.size() != expected.size() || CRYPTO_memcmp(data.data(), expected.data(), data.size()) != 0) {
      ended_ = true;
      connection_->Close(1008, "wrong password");
      return;
    }
    authenticated_ = true;
    std::weak_ptr<StreamBridge> weak = weak_from_this();
    auto forward = [weak](const node::v1::StreamOutput& output) {
      if (auto self = weak.lock()) self->Forward(output);
    };
    lock.unlock();  // output may arrive before the reply does
    auto reply = ticket_.exec ? nodes_.OpenExec(*ticket_.exec, forward) : nodes_.OpenAttach(*ticket_.attach, forward);
    lock.lock();
    if (!reply || !reply->ok()) {
      nodes_.CloseStream(session_id());
      ended_ = true;
      std::string why = !reply ? "the container group is not running on any node"
                                : reply->error_message().empty() ? reply->error_code() : reply->error_message();
      connection_->Send("error: " + why + "\r\n", false);
      connection_->Close(1011, why.substr(0, 120));  // a close reason is at most 123 bytes
      return;
    }
    opened_ = true;
    return;
  }
  if (!opened_ || !ticket_.exec) return;  // attach takes no input
  node::v1::StreamInput input;
  if (auto size = ParseResize(data)) {
    input.set_rows(size->first);
    input.set_cols(size->second);
  } else {
    input.set_data(data);
  }
  nodes_.SendInput(session_id(), input);
}

void StreamBridge::Forward(const node::v1::StreamOutput& output) {
  std::lock_guard lock(mutex_);
  if (!connection_ || (ended_ && !opened_)) return;
  if (!output.data().empty()) {
    std::string whole;
    bool valid = true;
    SplitUtf8(utf8_carry_, output.data(), &whole, &valid);
    if (!whole.empty()) connection_->Send(std::move(whole), !valid);
  }
  if (output.ended()) {
    if (!utf8_carry_.empty()) connection_->Send(std::exchange(utf8_carry_, {}), true);
    ended_ = true;
    nodes_.CloseStream(session_id());
    opened_ = false;
    connection_->Close(1000, "exit code " + std::to_string(output.exit_code()));
  }
}

void StreamBridge::OnClose() {
  std::lock_guard lock(mutex_);
  if (opened_) {
    node::v1::StreamInput terminate;
    terminate.set_terminate(true);
    nodes_.SendInput(session_id(), terminate);
    nodes_.CloseStream(session_id());
    opened_ = false;
  }
  ended_ = true;
  connection_.reset();
}

}  // namespace skiff::gateway
