#include "skiff/bus/nats_bus.h"

#include <nats/nats.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "skiff/crypto/nkey.h"
#include "skiff/log/log.h"

namespace skiff::bus {
namespace {

std::string StatusText(natsStatus status, jsErrCode js_error = static_cast<jsErrCode>(0)) {
  std::string text = natsStatus_GetText(status);
  if (js_error != 0) text += " (JetStream error " + std::to_string(static_cast<int>(js_error)) + ")";
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && *last != '\0') text += ": " + std::string(last);
  return text;
}

void Check(natsStatus status, const std::string& what) {
  if (status != NATS_OK) throw std::runtime_error(what + ": " + StatusText(status));
}

}  // namespace

ReceivedMessage::~ReceivedMessage() {
  if (msg_ != nullptr) natsMsg_Destroy(msg_);
}

std::string ReceivedMessage::Subject() const { return natsMsg_GetSubject(msg_); }

std::string ReceivedMessage::Data() const {
  return std::string(natsMsg_GetData(msg_), static_cast<size_t>(natsMsg_GetDataLength(msg_)));
}

std::optional<std::string> ReceivedMessage::Header(const std::string& name) const {
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg_, name.c_str(), &value) != NATS_OK || value == nullptr) return std::nullopt;
  return std::string(value);
}

bool ReceivedMessage::Ack() { return natsMsg_Ack(msg_, nullptr) == NATS_OK; }
bool ReceivedMessage::Nak() { return natsMsg_Nak(msg_, nullptr) == NATS_OK; }

std::optional<ReceivedMessage::StreamPosition> ReceivedMessage::Position() const {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, msg_) != NATS_OK || meta == nullptr) return std::nullopt;
  StreamPosition position{meta->Sequence.Stream, meta->NumPending, meta->Timestamp};
  jsMsgMetaData_Destroy(meta);
  return position;
}

PullConsumer::~PullConsumer() {
  if (sub_ != nullptr) natsSubscription_Destroy(sub_);
}

std::vector<ReceivedMessage> PullConsumer::Fetch(int batch, std::chrono::milliseconds timeout) {
  natsMsgList list{};
  jsErrCode js_error{};
  std::vector<ReceivedMessage> out;
  // A fetch that ends early (time-out, a status from the server) may still have delivered
  // messages: take whatever the list holds, whatever the status.
  natsSubscription_Fetch(&list, sub_, batch, timeout.count(), &js_error);
  if (list.Msgs == nullptr) return out;
  out.reserve(static_cast<size_t>(list.Count));
  for (int i = 0; i < list.Count; ++i) {
    out.emplace_back(list.Msgs[i]);
    list.Msgs[i] = nullptr;  // ownership moved
  }
  natsMsgList_Destroy(&list);
  return out;
}

Prefetcher::Prefetcher(PullConsumer& consumer, int batch, size_t depth)
    : consumer_(consumer), batch_(batch), depth_(std::max<size_t>(1, depth)) {
  thread_ = std::thread([this] { Run(); });
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
  // Never handed out: back to the stream now rather than after the ack wait.
  for (auto& messages : ready_) {
    for (auto& message : messages) message.Nak();
  }
}

void Prefetcher::Run() {
  while (true) {
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || ready_.size() < depth_; });
      if (stopping_) return;
    }
    auto messages = consumer_.Fetch(batch_, std::chrono::milliseconds(200));
    if (messages.empty()) continue;
    {
      std::lock_guard lock(mutex_);
      ready_.push_back(std::move(messages));  // the destructor gives them back if stopping
    }
    changed_.notify_all();
  }
}

std::vector<ReceivedMessage> Prefetcher::Next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, timeout, [&] { return !ready_.empty(); })) return {};
  auto messages = std::move(ready_.front());
  ready_.pop_front();
  lock.unlock();
  changed_.notify_all();
  return messages;
}

std::string InboxPrefixForSeedFile(const std::string& seed_file) {
  std::ifstream in(seed_file);
  std::string seed;
  in >> seed;
  auto public_key = crypto::UserNkeyPublicKey(seed);
  if (!public_key) throw std::runtime_error("bus.nkey_seed_file " + seed_file + " holds no NATS user seed");
  return "_INBOX." + *public_key;
}

NatsBus::NatsBus(const std::string& url, const std::string& client_name)
    : NatsBus(ConnectOptions{url, client_name, "", "", "", ""}) {}

NatsBus::NatsBus(const ConnectOptions& options) {
  natsOptions* opts = nullptr;
  Check(natsOptions_Create(&opts), "nats options");
  std::unique_ptr<natsOptions, decltype(&natsOptions_Destroy)> guard(opts, &natsOptions_Destroy);
  Check(natsOptions_SetURL(opts, options.url.c_str()), "nats url");
  Check(natsOptions_SetName(opts, options.client_name.c_str()), "nats name");
  if (!options.nkey_seed_file.empty()) {
    const std::string inbox = InboxPrefixForSeedFile(options.nkey_seed_file);
    const std::string public_key = inbox.substr(std::string("_INBOX.").size());
    Check(natsOptions_SetNKeyFromSeed(opts, public_key.c_str(), options.nkey_seed_file.c_str()), "nats nkey");
    Check(natsOptions_SetCustomInboxPrefix(opts, inbox.c_str()), "nats inbox prefix");
  }
  if (!options.tls_ca_file.empty()) {
    Check(natsOptions_SetSecure(opts, true), "nats tls");
    Check(natsOptions_LoadCATrustedCertificates(opts, options.tls_ca_file.c_str()), "nats tls ca " + options.tls_ca_file);
    if (!options.tls_cert_file.empty()) {
      Check(natsOptions_LoadCertificatesChain(opts, options.tls_cert_file.c_str(), options.tls_key_file.c_str()),
            "nats tls certificate " + options.tls_cert_file);
    }
  }
  Check(natsOptions_SetMaxReconnect(opts, -1), "nats reconnect");
  Check(natsOptions_SetReconnectWait(opts, 250), "nats reconnect wait");
  // Start even when the server is not up yet; nats.c keeps trying in the background.
  Check(natsOptions_SetRetryOnFailedConnect(opts, true, nullptr, nullptr), "nats retry");
  natsStatus status = natsConnection_Connect(&conn_, opts);
  if (status != NATS_OK && status != NATS_NOT_YET_CONNECTED) Check(status, "nats connect");
  jsOptions js_opts;
  jsOptions_Init(&js_opts);
  js_opts.Wait = 5000;
  js_opts.PublishAsync.ErrHandler = [](jsCtx*, jsPubAckErr* failure, void* closure) {
    spdlog::warn("async publish failed: {}", failure->ErrText != nullptr ? failure->ErrText : natsStatus_GetText(failure->Err));
    static_cast<NatsBus*>(closure)->async_failures_++;
  };
  js_opts.PublishAsync.ErrHandlerClosure = this;
  Check(natsConnection_JetStream(&js_, conn_, &js_opts), "jetstream context");
}

NatsBus::~NatsBus() {
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (conn_ != nullptr) natsConnection_Destroy(conn_);
}

void NatsBus::EnsureStream(const StreamSpec& spec) {
  std::vector<const char*> subjects;
  for (const auto& s : spec.subjects) subjects.push_back(s.c_str());
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = spec.name.c_str();
  cfg.Subjects = subjects.data();
  cfg.SubjectsLen = static_cast<int>(subjects.size());
  cfg.Storage = spec.file_storage ? js_FileStorage : js_MemoryStorage;
  cfg.Duplicates = std::chrono::duration_cast<std::chrono::nanoseconds>(spec.duplicate_window).count();
  jsStreamInfo* info = nullptr;
  jsErrCode js_error{};
  // As wanted already: nothing to change (and nothing that needs more than stream info).
  if (js_GetStreamInfo(&info, js_, spec.name.c_str(), nullptr, &js_error) == NATS_OK && info != nullptr) {
    std::vector<std::string> have(info->Config->Subjects, info->Config->Subjects + info->Config->SubjectsLen);
    const bool same = have == spec.subjects && info->Config->Storage == cfg.Storage;
    jsStreamInfo_Destroy(info);
    info = nullptr;
    if (same) return;
  }
  natsStatus status = js_AddStream(&info, js_, &cfg, nullptr, &js_error);
  if (status != NATS_OK && js_error == JSStreamNameExistErr) {
    status = js_UpdateStream(&info, js_, &cfg, nullptr, &js_error);
  }
  if (info != nullptr) jsStreamInfo_Destroy(info);
  if (status != NATS_OK) throw std::runtime_error("stream " + spec.name + ": " + StatusText(status, js_error));
}

size_t NatsBus::PublishAll(const std::vector<OutgoingMessage>& messages, std::string* error) {
  std::lock_guard lock(async_mutex_);
  const int failures_before = async_failures_;
  for (const auto& m : messages) {
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MsgId = m.message_id.c_str();
    natsStatus status = js_PublishAsync(js_, m.subject.c_str(), m.payload.data(), static_cast<int>(m.payload.size()), &opts);
    if (status != NATS_OK) {
      if (error != nullptr) *error = StatusText(status);
      js_PublishAsyncComplete(js_, nullptr);  // let what was sent settle before a retry
      return 0;
    }
  }
  jsPubOptions wait;
  jsPubOptions_Init(&wait);
  wait.MaxWait = 5000;
  natsStatus status = js_PublishAsyncComplete(js_, &wait);
  if (status != NATS_OK || async_failures_ != failures_before) {
    if (error != nullptr) *error = status != NATS_OK ? StatusText(status) : "the stream refused a message";
    return 0;
  }
  return messages.size();
}

PublishResult NatsBus::Publish(const std::string& subject, const std::string& message_id,
                               const std::string& payload) {
  jsPubOptions opts;
  jsPubOptions_Init(&opts);
  opts.MsgId = message_id.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode js_error{};
  natsStatus status = js_Publish(&ack, js_, subject.c_str(), payload.data(), static_cast<int>(payload.size()),
                                 &opts, &js_error);
  PublishResult result;
  result.ok = status == NATS_OK;
  if (ack != nullptr) {
    result.duplicate = ack->Duplicate;
    jsPubAck_Destroy(ack);
  }
  if (!result.ok) result.error = StatusText(status, js_error);
  return result;
}

std::optional<std::string> NatsBus::Request(const std::string& subject, const std::string& payload,
                                            std::chrono::milliseconds timeout) {
  natsMsg* reply = nullptr;
  natsStatus status = natsConnection_Request(&reply, conn_, subject.c_str(), payload.data(),
                                             static_cast<int>(payload.size()), timeout.count());
  if (status != NATS_OK) return std::nullopt;
  std::string data(natsMsg_GetData(reply), static_cast<size_t>(natsMsg_GetDataLength(reply)));
  natsMsg_Destroy(reply);
  return data;
}

std::unique_ptr<PullConsumer> NatsBus::PullSubscribe(const std::string& stream, const std::string& subject,
                                                     const std::string& durable, int max_ack_pending) {
  if (max_ack_pending > 0) {
    // The client refuses a durable whose settings differ from the ones asked for: bring one
    // made by an older version up to date first.
    jsConsumerInfo* info = nullptr;
    jsErrCode js_error{};
    if (js_GetConsumerInfo(&info, js_, stream.c_str(), durable.c_str(), nullptr, &js_error) == NATS_OK &&
        info->Config->MaxAckPending != max_ack_pending) {
      info->Config->MaxAckPending = max_ack_pending;
      jsConsumerInfo* updated = nullptr;
      natsStatus status = js_UpdateConsumer(&updated, js_, stream.c_str(), info->Config, nullptr, &js_error);
      if (updated != nullptr) jsConsumerInfo_Destroy(updated);
      if (status != NATS_OK) {
        jsConsumerInfo_Destroy(info);
        throw std::runtime_error("update consumer " + durable + ": " + StatusText(status, js_error));
      }
    }
    if (info != nullptr) jsConsumerInfo_Destroy(info);
  }
  jsSubOptions sub_opts;
  jsSubOptions_Init(&sub_opts);
  sub_opts.Stream = stream.c_str();
  sub_opts.Config.AckPolicy = js_AckExplicit;
  sub_opts.Config.DeliverPolicy = js_DeliverAll;
  if (max_ack_pending > 0) sub_opts.Config.MaxAckPending = max_ack_pending;
  natsSubscription* sub = nullptr;
  jsErrCode js_error{};
  natsStatus status = js_PullSubscribe(&sub, js_, subject.c_str(), durable.c_str(), nullptr, &sub_opts, &js_error);
  if (status != NATS_OK) throw std::runtime_error("pull subscribe " + durable + ": " + StatusText(status, js_error));
  return std::make_unique<PullConsumer>(sub);
}

RequestServer::RequestServer(natsConnection* conn, Handler handler, int workers)
    : conn_(conn), handler_(std::move(handler)) {
  for (int i = 0; i < std::max(1, workers); ++i) workers_.emplace_back([this] { Work(); });
}

RequestServer::~RequestServer() {
  if (sub_ != nullptr) {
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);
  }
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& t : workers_) t.join();
}

void RequestServer::Enqueue(std::string subject, std::string reply, std::string data) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back({std::move(subject), std::move(reply), std::move(data)});
  }
  ready_.notify_one();
}

void RequestServer::Work() {
  while (true) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    std::optional<std::string> answer;
    try {
      answer = handler_(job.subject, job.data);
    } catch (const std::exception& e) {
      spdlog::error("request on {} failed: {}", job.subject, e.what());
      continue;
    }
    if (!job.reply.empty() && answer) {
      natsConnection_Publish(conn_, job.reply.c_str(), answer->data(), static_cast<int>(answer->size()));
    }
  }
}

namespace {

void OnRequest(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* server = static_cast<RequestServer*>(closure);
  const char* reply = natsMsg_GetReply(msg);
  server->Enqueue(natsMsg_GetSubject(msg), reply ? reply : "",
                  std::string(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg))));
  natsMsg_Destroy(msg);
}

}  // namespace

std::unique_ptr<RequestServer> NatsBus::Serve(const std::string& subject, const std::string& queue,
                                              RequestServer::Handler handler, int workers) {
  auto server = std::make_unique<RequestServer>(conn_, std::move(handler), workers);
  natsSubscription* sub = nullptr;
  Check(natsConnection_QueueSubscribe(&sub, conn_, subject.c_str(), queue.c_str(), OnRequest, server.get()),
        "subscribe");
  server->Attach(sub);
  return server;
}

namespace {

void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* handler = static_cast<Subscription::Handler*>(closure);
  (*handler)(natsMsg_GetSubject(msg), std::string(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg))));
  natsMsg_Destroy(msg);
}

void OnSubscriptionComplete(void* closure) { delete static_cast<Subscription::Handler*>(closure); }

}  // namespace

std::unique_ptr<Subscription> NatsBus::Subscribe(const std::string& subject, Subscription::Handler handler) {
  auto* closure = new Subscription::Handler(std::move(handler));
  natsSubscription* sub = nullptr;
  if (natsConnection_Subscribe(&sub, conn_, subject.c_str(), OnMessage, closure) != NATS_OK) {
    delete closure;
    throw std::runtime_error("subscribe to " + subject + " failed");
  }
  // The closure lives until nats.c says no callback runs or will run any more.
  natsSubscription_SetOnCompleteCB(sub, OnSubscriptionComplete, closure);
  return std::make_unique<Subscription>(sub);
}

Subscription::~Subscription() {
  natsSubscription_Unsubscribe(sub_);
  natsSubscription_Destroy(sub_);
}

bool NatsBus::PublishCore(const std::string& subject, const std::string& payload) {
  return natsConnection_Publish(conn_, subject.c_str(), payload.data(), static_cast<int>(payload.size())) == NATS_OK;
}

bool NatsBus::Connected() const { return natsConnection_Status(conn_) == NATS_CONN_STATUS_CONNECTED; }

void NatsBus::Drain(std::chrono::milliseconds timeout) {
  if (conn_ == nullptr || natsConnection_IsClosed(conn_)) return;
  if (Connected() && natsConnection_DrainTimeout(conn_, timeout.count()) == NATS_OK) {
    // Drain is asynchronous; wait for it to close the connection.
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!natsConnection_IsClosed(conn_) && std::chrono::steady_clock::now() < deadline) {
      nats_Sleep(10);
    }
  }
  natsConnection_Close(conn_);
}

}  // namespace skiff::bus
