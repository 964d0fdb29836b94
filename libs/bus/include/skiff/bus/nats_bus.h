#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "skiff/bus/event_publisher.h"

// Opaque nats.c types, so that nats.h stays out of every translation unit that uses the bus.
typedef struct __natsConnection natsConnection;
typedef struct __natsSubscription natsSubscription;
typedef struct __natsMsg natsMsg;
typedef struct __jsCtx jsCtx;

namespace skiff::bus {

struct StreamSpec {
  std::string name;
  std::vector<std::string> subjects;
  std::chrono::seconds duplicate_window{120};
  bool file_storage = true;
};

// A message received from a pull consumer; Ack() tells JetStream it was processed.
class ReceivedMessage {
 public:
  explicit ReceivedMessage(natsMsg* msg) : msg_(msg) {}
  ReceivedMessage(ReceivedMessage&& other) noexcept : msg_(other.msg_) { other.msg_ = nullptr; }
  ReceivedMessage& operator=(ReceivedMessage&&) = delete;
  ~ReceivedMessage();

  std::string Subject() const;
  std::string Data() const;
  std::optional<std::string> Header(const std::string& name) const;
  bool Ack();
  bool Nak();
  // Where the message sits in its stream: its sequence, and how many messages the consumer
  // still had to deliver after it (a consumer's lag). nullopt for a plain core-NATS message.
  struct StreamPosition {
    uint64_t stream_sequence = 0;
    uint64_t pending = 0;
    int64_t stored_at_ns = 0;
  };
  std::optional<StreamPosition> Position() const;

 private:
  natsMsg* msg_;
};

class PullConsumer {
 public:
  PullConsumer(natsSubscription* sub) : sub_(sub) {}
  ~PullConsumer();
  PullConsumer(const PullConsumer&) = delete;
  PullConsumer& operator=(const PullConsumer&) = delete;

  // Up to `batch` messages; empty when none arrived within `timeout`.
  std::vector<ReceivedMessage> Fetch(int batch, std::chrono::milliseconds timeout);

 private:
  natsSubscription* sub_;
};

// Fetches from a pull consumer on its own thread, up to `depth` batches ahead, so the next batch
// is on its way while the caller works on this one. Prefetched messages count against the
// consumer's max_ack_pending; those never taken are given back (Nak) when it stops.
class Prefetcher {
 public:
  Prefetcher(PullConsumer& consumer, int batch, size_t depth);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next fetched batch; empty if none came within `timeout`.
  std::vector<ReceivedMessage> Next(std::chrono::milliseconds timeout);

 private:
  void Run();

  PullConsumer& consumer_;
  int batch_;
  size_t depth_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::vector<ReceivedMessage>> ready_;
  bool stopping_ = false;
  std::thread thread_;
};

// A queue-group subscription that answers requests on a pool of worker threads, so a slow
// request (an image pull) does not hold up the others. Unsubscribes and joins on destruction.
class RequestServer {
 public:
  // nullopt: send no reply (another responder may answer).
  using Handler = std::function<std::optional<std::string>(const std::string& subject, const std::string& data)>;
  RequestServer(natsConnection* conn, Handler handler, int workers);
  ~RequestServer();
  RequestServer(const RequestServer&) = delete;
  RequestServer& operator=(const RequestServer&) = delete;
  void Attach(natsSubscription* sub) { sub_ = sub; }
  void Enqueue(std::string subject, std::string reply, std::string data);

 private:
  void Work();
  struct Job {
    std::string subject, reply, data;
  };
  natsConnection* conn_;
  natsSubscription* sub_ = nullptr;
  Handler handler_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// A plain core-NATS subscription; messages arrive in order on the connection's delivery thread.
// Destroying it unsubscribes; the handler is released only once nats.c has finished with it.
class Subscription {
 public:
  using Handler = std::function<void(const std::string& subject, const std::string& data)>;
  explicit Subscription(natsSubscription* sub) : sub_(sub) {}
  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

 private:
  natsSubscription* sub_;
};

// How a service reaches NATS and proves who it is.
struct ConnectOptions {
  std::string url = "nats://127.0.0.1:4222";  // comma-separated for a cluster; tls:// for TLS
  std::string client_name;
  // The service's own nkey (a user seed, file mode 0600): nats-server knows its public key and
  // the subjects it may use. Its inbox prefix becomes "_INBOX.<public key>", so replies to it
  // are a subject only it may subscribe to. Empty: no credential (a server without auth).
  std::string nkey_seed_file;
  // TLS (required wherever NATS leaves loopback): the CA that signed the server's certificate,
  // and optionally this client's certificate and key (mutual TLS).
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
};

// The inbox prefix a client with this nkey seed uses ("_INBOX.<public key>"); what the NATS
// authorization of that key lets it subscribe to. Throws when the file holds no user seed.
std::string InboxPrefixForSeedFile(const std::string& seed_file);

// One reconnecting NATS connection with its JetStream context. Thread-safe (nats.c is).
class NatsBus : public EventPublisher {
 public:
  // Keeps retrying in the background when the server is not up yet, and reconnects forever.
  // Throws std::runtime_error when the URL, the credential or the TLS files are unusable.
  explicit NatsBus(const ConnectOptions& options);
  NatsBus(const std::string& url, const std::string& client_name);
  ~NatsBus() override;
  NatsBus(const NatsBus&) = delete;
  NatsBus& operator=(const NatsBus&) = delete;

  // Creates the stream, or updates its subjects if it exists with others (a stream already as
  // wanted is left alone, so a service allowed only to read stream info and create streams
  // starts as well). Throws on failure.
  void EnsureStream(const StreamSpec& spec);

  PublishResult Publish(const std::string& subject, const std::string& message_id,
                        const std::string& payload) override;
  // Pipelined: every message is sent, then the acks are awaited together. All or none count
  // (a failed one may sit anywhere); a republish is dropped by the stream's duplicate window.
  size_t PublishAll(const std::vector<OutgoingMessage>& messages, std::string* error) override;

  // Plain core-NATS request/reply. nullopt on timeout or no responders.
  std::optional<std::string> Request(const std::string& subject, const std::string& payload,
                                     std::chrono::milliseconds timeout);

  // Durable pull consumer with explicit acks on `stream`, filtered to `subject`.
  // `max_ack_pending` > 0: how many delivered messages may wait for their acks (an existing
  // consumer is updated to it); 0 keeps the server's default.
  std::unique_ptr<PullConsumer> PullSubscribe(const std::string& stream, const std::string& subject,
                                              const std::string& durable, int max_ack_pending = 0);

  // Answers requests on `subject` (wildcards allowed) in queue group `queue`.
  std::unique_ptr<RequestServer> Serve(const std::string& subject, const std::string& queue,
                                       RequestServer::Handler handler, int workers);

  std::unique_ptr<Subscription> Subscribe(const std::string& subject, Subscription::Handler handler);

  // Core-NATS publish without JetStream (fire and forget).
  bool PublishCore(const std::string& subject, const std::string& payload);

  bool Connected() const;

  // Lets in-flight messages and replies finish, then closes. Safe to call twice.
  void Drain(std::chrono::milliseconds timeout);

 private:
  natsConnection* conn_ = nullptr;
  jsCtx* js_ = nullptr;
  std::mutex async_mutex_;        // one PublishAll at a time: its acks are awaited together
  std::atomic<int> async_failures_{0};
};

}  // namespace skiff::bus
