// The Kafka transport against librdkafka's mock cluster in this process: the relay produces
// the outbox after commit as CloudEvents, listeners store records in the inbox, bad records
// become dead letters.
#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>

#include <map>

#include <fmt/format.h>
#include <soci/soci.h>

#include "depot/transports/cloudevents.hpp"
#include "depot/transports/kafka.hpp"
#include "fixture.hpp"

using namespace depot_it;

namespace {

struct order_placed {
  std::string order_id;
  std::int64_t amount = 0;
};
DEPOT_MESSAGE(order_placed, "shop.order-placed", order_id, amount)
DEPOT_MESSAGE_KEY(order_placed, order_id)

struct place_order {
  std::string order_id;
  std::int64_t amount = 0;
};
DEPOT_MESSAGE(place_order, "shop.place-order", order_id, amount)

/// A plain librdkafka client for the test's side of the wire.
class kafka_client {
public:
  kafka_client(const std::string& brokers, rd_kafka_type_t type, const std::string& group = {}) {
    char reason[512];
    auto* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), reason, sizeof reason);
    if (type == RD_KAFKA_CONSUMER) {
      rd_kafka_conf_set(conf, "group.id", group.c_str(), reason, sizeof reason);
      rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", reason, sizeof reason);
    }
    rk_ = rd_kafka_new(type, conf, reason, sizeof reason);
    REQUIRE(rk_ != nullptr);
    if (type == RD_KAFKA_CONSUMER)
      rd_kafka_poll_set_consumer(rk_);
  }
  ~kafka_client() {
    if (rd_kafka_type(rk_) == RD_KAFKA_CONSUMER)
      rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
  }

  /// Produces `r` and waits until it is acknowledged.
  void produce(const depot::cloudevents::record& r) {
    auto* headers = rd_kafka_headers_new(r.headers.size());
    for (const auto& [name, value] : r.headers)
      rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                          static_cast<ssize_t>(value.size()));
    auto err = rd_kafka_producev(
      rk_, RD_KAFKA_V_TOPIC(r.topic.c_str()),
      RD_KAFKA_V_KEY((r.key ? r.key->data() : nullptr), (r.key ? r.key->size() : std::size_t{0})),
      RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
    REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR);
    REQUIRE(rd_kafka_flush(rk_, 10'000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  /// Consumes `topic` until `n` records arrived or `timeout` passed.
  std::vector<depot::cloudevents::record> consume(const std::string& topic, std::size_t n,
                                                  std::chrono::milliseconds timeout = 20s) {
    auto* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk_, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    std::vector<depot::cloudevents::record> result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (result.size() < n && std::chrono::steady_clock::now() < deadline) {
      auto* m = rd_kafka_consumer_poll(rk_, 100);
      if (m == nullptr)
        continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        depot::cloudevents::record r;
        r.topic = rd_kafka_topic_name(m->rkt);
        r.partition = m->partition;
        r.offset = m->offset;
        if (m->key != nullptr)
          r.key.emplace(static_cast<const char*>(m->key), m->key_len);
        r.value.assign(static_cast<const char*>(m->payload), m->len);
        rd_kafka_headers_t* hs = nullptr;
        if (rd_kafka_message_headers(m, &hs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
          const char* name;
          const void* value;
          std::size_t size;
          for (std::size_t i = 0;
               rd_kafka_header_get_all(hs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
               ++i)
            r.headers.emplace_back(name, std::string{static_cast<const char*>(value), size});
        }
        result.push_back(std::move(r));
      }
      rd_kafka_message_destroy(m);
    }
    return result;
  }

private:
  rd_kafka_t* rk_;
};

std::string header_of(const depot::cloudevents::record& r, const std::string& name) {
  for (const auto& [n, v] : r.headers)
    if (n == name)
      return v;
  return {};
}

} // namespace

TEST_CASE("a handler's published events reach Kafka as binary CloudEvents after its commit") {
  test_schema s;
  depot::embedded_kafka cluster;
  depot::routing app;
  app.publish<order_placed>().to_kafka("shop.events");
  app.handle<place_order>([](const place_order& m, depot::context& ctx) {
    ctx.publish(order_placed{m.order_id, m.amount});
    if (m.amount < 0)
      throw std::runtime_error{"no negative orders"};
  });
  app.queue("shop.place-order").on_any_exception().dead_letter();
  auto settings = s.node_config();
  settings.kafka = cluster.bootstrap();
  settings.service_uri = "urn:test:shop";
  depot::node n{app, settings};
  n.start();
  n.send(place_order{"o-1", 5});
  n.send(place_order{"o-2", -1}); // rolled back: its event is never produced
  n.send(place_order{"o-3", 7});
  kafka_client reader{cluster.bootstrap(), RD_KAFKA_CONSUMER, "it-reader"};
  auto events = reader.consume("shop.events", 3, 10s);
  REQUIRE(events.size() == 2);
  std::map<std::string, depot::cloudevents::record> by_key;
  for (auto& e : events)
    by_key[e.key.value_or("")] = e;
  REQUIRE(by_key.count("o-1") == 1);
  auto& e = by_key["o-1"];
  CHECK(header_of(e, "ce_specversion") == "1.0");
  CHECK(header_of(e, "ce_type") == "shop.order-placed");
  CHECK(header_of(e, "ce_source") == "urn:test:shop");
  CHECK(header_of(e, "ce_partitionkey") == "o-1");
  CHECK(header_of(e, "content-type") == "application/json");
  CHECK(e.value == R"({"order_id":"o-1","amount":5})");
  CHECK(by_key.count("o-3") == 1);
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM outgoing") == 0; }));
  n.stop();
}

TEST_CASE("a Kafka listener stores each record once and dead-letters what is no event") {
  test_schema s;
  create_effects_table(s);
  depot::embedded_kafka cluster;
  depot::routing app;
  auto effects = s.table("effects");
  app.handle<place_order>(
    [effects](const place_order&, depot::context& ctx) { record_effect(ctx, effects, "placed"); });
  app.listen_to_kafka({"shop.commands"}).in_group("it-shop");
  auto settings = s.node_config();
  settings.kafka = cluster.bootstrap();
  depot::node n{app, settings};
  n.start();
  kafka_client writer{cluster.bootstrap(), RD_KAFKA_PRODUCER};
  depot::envelope cmd;
  cmd.id = depot::new_envelope_id();
  cmd.message_type = "shop.place-order";
  cmd.body = R"({"order_id":"o-1","amount":3})";
  auto binary = depot::cloudevents::to_record(cmd, "shop.commands", "urn:test:client",
                                              depot::cloudevents_mode::binary);
  writer.produce(binary);
  writer.produce(binary); // the same event again
  cmd.id = depot::new_envelope_id();
  writer.produce(depot::cloudevents::to_record(cmd, "shop.commands", "urn:test:client",
                                               depot::cloudevents_mode::structured));
  auto bad = binary;
  bad.headers.erase(bad.headers.begin() + 1); // ce_id
  writer.produce(bad);
  REQUIRE(wait_until([&] {
    return s.number("SELECT count(*) FROM effects") == 2 &&
           s.number("SELECT count(*) FROM dead_letters") == 1;
  }));
  CHECK(s.text("SELECT exception_message FROM dead_letters").find("ce_id") != std::string::npos);
  CHECK(s.text("SELECT queue FROM dead_letters") == "kafka://shop.commands");
  n.stop();
}
