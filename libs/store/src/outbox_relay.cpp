#include "skiff/store/outbox_relay.h"

#include "skiff/log/log.h"
#include "skiff/store/pool.h"

namespace skiff::store {

size_t PublishInOrder(const std::vector<OutboxEntry>& batch, bus::EventPublisher& publisher, std::string* error) {
  std::vector<bus::OutgoingMessage> messages;
  messages.reserve(batch.size());
  for (const auto& entry : batch) messages.push_back({entry.subject, entry.event_id, entry.payload});
  return publisher.PublishAll(messages, error);  // pipelined where the publisher can
}

RelayLoop::RelayLoop(std::string name, int batch_size, std::chrono::milliseconds poll_interval,
                     std::chrono::milliseconds min_gap)
    : name_(std::move(name)), batch_size_(batch_size), poll_interval_(poll_interval), min_gap_(min_gap) {}

RelayLoop::~RelayLoop() { Stop(); }

void RelayLoop::Start() { thread_ = std::thread([this] { Loop(); }); }

void RelayLoop::Notify() {
  std::lock_guard lock(mutex_);
  pending_ = true;
  wake_.notify_one();
}

void RelayLoop::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    wake_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

namespace {
std::string QuotedName(const std::string& identifier) {
  std::string quoted = "\"";
  for (char c : identifier) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}
}  // namespace

OutboxRelay::OutboxRelay(ConnectionPool& pool, bus::EventPublisher& publisher, Options options)
    : RelayLoop("outbox relay " + options.schema, options.batch_size, options.poll_interval, options.min_gap),
      pool_(pool),
      publisher_(publisher),
      options_(std::move(options)),
      unpublished_{"outbox.unpublished." + options_.schema,
                   "SELECT seq, event_id::text, subject, encode(payload, 'hex') FROM " + QuotedName(options_.schema) +
                       ".outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1"},
      published_{"outbox.published." + options_.schema,
                 "DELETE FROM " + QuotedName(options_.schema) + ".outbox WHERE seq = ANY($1::bigint[])"} {}

OutboxRelay::~OutboxRelay() { Stop(); }

size_t OutboxRelay::RunOnce() {
  static const Statement lock{"outbox.lock", "SELECT pg_try_advisory_xact_lock(hashtext($1))"};
  return InTransaction(pool_, [&](pqxx::work& tx) -> size_t {
    auto locked = ExecPrepared(tx, lock, "skiff.outbox." + options_.schema);
    if (!locked[0][0].as<bool>()) return 0;  // another relay is at work
    auto rows = ExecPrepared(tx, unpublished_, options_.batch_size);
    std::vector<OutboxEntry> batch;
    batch.reserve(rows.size());
    for (const auto& row : rows) {
      batch.push_back({row[0].as<long long>(), row[1].as<std::string>(), row[2].as<std::string>(),
                       HexDecode(row[3].as<std::string>())});
    }
    if (batch.empty()) return 0;
    std::string error;
    size_t published = PublishInOrder(batch, publisher_, &error);
    if (published > 0) {
      // Exactly the rows sent. Not "seq <= last": sequence numbers are taken at insert but rows
      // commit in any order, so a lower seq can commit after the SELECT, and this statement
      // (read committed: a fresh snapshot) would mark it published without it ever being sent.
      std::string seqs = "{";
      for (size_t i = 0; i < published; ++i) seqs += (i ? "," : "") + std::to_string(batch[i].seq);
      seqs += "}";
      // Deleted, not marked: JetStream holds the events now, and a marked row would stay in
      // every index (the update cannot be HOT), so each later SELECT would step over it.
      ExecPrepared(tx, published_, seqs);
    }
    if (published < batch.size()) spdlog::warn("outbox relay: publish failed, will retry: {}", error);
    return published;
  });
}

void RelayLoop::Loop() {
  while (true) {
    const auto started = std::chrono::steady_clock::now();
    size_t published = 0;
    try {
      published = RunOnce();
    } catch (const std::exception& e) {
      spdlog::warn("{}: {}", name_, e.what());
    }
    std::unique_lock lock(mutex_);
    if (stopping_) return;
    if (published >= static_cast<size_t>(batch_size_)) continue;  // more waiting
    wake_.wait_for(lock, poll_interval_, [&] { return pending_ || stopping_; });
    if (!stopping_ && min_gap_.count() > 0) {
      // Woken early: let what else is being written now join this pass.
      wake_.wait_until(lock, started + min_gap_, [&] { return stopping_; });
    }
    pending_ = false;
    if (stopping_) {
      lock.unlock();
      try {
        RunOnce();  // flush what the last requests wrote
      } catch (const std::exception& e) {
        spdlog::warn("{} final flush: {}", name_, e.what());
      }
      return;
    }
  }
}

}  // namespace skiff::store
