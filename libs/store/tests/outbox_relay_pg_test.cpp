// The outbox relay against a real Postgres (started by integration-tests/infra.sh): rows that
// commit out of sequence order are neither lost nor published twice.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <pqxx/pqxx>

#include "skiff/store/migrations.h"
#include "skiff/store/outbox.h"
#include "skiff/store/outbox_relay.h"
#include "skiff/store/pool.h"

namespace skiff::store {
namespace {

std::string store_url;
std::string infra_dir;

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    infra_dir = "/tmp/skiff-it-store-" + std::to_string(::getpid());
    ASSERT_EQ(std::system((std::string(SKIFF_SOURCE_DIR) + "/integration-tests/infra.sh start " + infra_dir).c_str()), 0);
    std::ifstream env(infra_dir + "/infra.env");
    for (std::string line; std::getline(env, line);) {
      if (line.rfind("STORE_URL=", 0) == 0) store_url = line.substr(10);
    }
  }
  void TearDown() override {
    std::system((std::string(SKIFF_SOURCE_DIR) + "/integration-tests/infra.sh stop " + infra_dir).c_str());
  }
};

// Records what was published; runs `during_publish` once, inside the first Publish call, which
// is between the relay's SELECT and its UPDATE.
class RecordingStream : public bus::EventPublisher {
 public:
  bus::PublishResult Publish(const std::string&, const std::string& id, const std::string&) override {
    if (during_publish) std::exchange(during_publish, nullptr)();
    published.push_back(id);
    return {true, false, ""};
  }
  std::function<void()> during_publish;
  std::vector<std::string> published;
};

TEST(OutboxRelayPostgres, ARowCommittingOutOfSequenceOrderIsPublishedLaterNotLost) {
  {
    pqxx::connection conn(store_url);
    ApplyMigrations(conn, "relaytest", {{1, "outbox", OutboxTableSql()}});
  }
  const std::string first = "00000000-0000-4000-8000-000000000001";
  const std::string second = "00000000-0000-4000-8000-000000000002";
  // The first row takes the lower sequence number but commits last.
  pqxx::connection slow(store_url);
  auto slow_tx = std::make_unique<pqxx::work>(slow);
  AppendToOutbox(*slow_tx, "relaytest", {0, first, "skiff.events.test", "one"});
  {
    pqxx::connection fast(store_url);
    pqxx::work tx(fast);
    AppendToOutbox(tx, "relaytest", {0, second, "skiff.events.test", "two"});
    tx.commit();
  }
  ConnectionPool pool(store_url, 2);
  RecordingStream stream;
  stream.during_publish = [&] { slow_tx->commit(); };
  OutboxRelay relay(pool, stream, {"relaytest", 100, std::chrono::milliseconds(200)});
  EXPECT_EQ(relay.RunOnce(), 1u);  // only the second row was visible to the SELECT
  EXPECT_EQ(relay.RunOnce(), 1u);  // the first is still unpublished, and goes now
  EXPECT_EQ(relay.RunOnce(), 0u);
  EXPECT_EQ(stream.published, (std::vector<std::string>{second, first}));
}

}  // namespace
}  // namespace skiff::store

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new skiff::store::PostgresEnvironment);
  return RUN_ALL_TESTS();
}
