// The Kafka transport against librdkafka's mock cluster in this process: the relay produces
// the outbox after commit as CloudEvents (again after a lost completion, through broker errors,
// scheduled ones when due), listeners store records in the inbox and commit their offsets after
// that (or keep them in Postgres), pause above their backlog bound, and bad records become dead
// letters.
#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <map>
#include <set>

#include <fmt/format.h>
#include <rapidjson/document.h>
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

/// Partitions the mock cluster gives a topic it creates on first use; tests create theirs so.
constexpr int partitions = 4;

/// Where a produced record landed.
struct delivery {
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__IN_PROGRESS;
};

/// A consumed record and its Kafka timestamp (milliseconds since the epoch: when the producer
/// produced it).
struct received {
  depot::cloudevents::record r;
  std::int64_t timestamp_ms = -1;
};

/// A plain librdkafka client for the test's side of the wire.
class kafka_client {
public:
  kafka_client(const std::string& brokers, rd_kafka_type_t type, const std::string& group = {}) {
    char reason[512];
    auto* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), reason, sizeof reason);
    if (type == RD_KAFKA_CONSUMER) {
      rd_kafka_conf_set(conf, "group.id", (group.empty() ? "it-reader" : group).c_str(), reason,
                        sizeof reason);
      rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", reason, sizeof reason);
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", reason, sizeof reason);
    } else {
      rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
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
  kafka_client(const kafka_client&) = delete;
  kafka_client& operator=(const kafka_client&) = delete;

  /// Produces `r` and waits until it is acknowledged.
  delivery produce(const depot::cloudevents::record& r) { return produce_all({r}).at(0); }

  /// Produces `rs` in this order and waits until all are acknowledged.
  std::vector<delivery> produce_all(const std::vector<depot::cloudevents::record>& rs) {
    std::vector<delivery> result(rs.size());
    for (std::size_t i = 0; i < rs.size(); ++i) {
      const auto& r = rs[i];
      auto* headers = rd_kafka_headers_new(r.headers.size());
      for (const auto& [name, value] : r.headers)
        rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                            static_cast<ssize_t>(value.size()));
      auto err = rd_kafka_producev(
        rk_, RD_KAFKA_V_TOPIC(r.topic.c_str()),
        RD_KAFKA_V_KEY((r.key ? r.key->data() : nullptr), (r.key ? r.key->size() : std::size_t{0})),
        RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
        RD_KAFKA_V_OPAQUE(&result[i]), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_headers_destroy(headers);
      REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    REQUIRE(rd_kafka_flush(rk_, 10'000) == RD_KAFKA_RESP_ERR_NO_ERROR);
    for (const auto& d : result)
      REQUIRE(d.err == RD_KAFKA_RESP_ERR_NO_ERROR);
    return result;
  }

  /// Consumes `topic` in this client's group until `n` records arrived or `timeout` passed.
  std::vector<depot::cloudevents::record> consume(const std::string& topic, std::size_t n,
                                                  std::chrono::milliseconds timeout = 20s) {
    if (!subscribed_) {
      auto* topics = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
      rd_kafka_subscribe(rk_, topics);
      rd_kafka_topic_partition_list_destroy(topics);
      subscribed_ = true;
    }
    std::vector<depot::cloudevents::record> result;
    for (auto& x : poll(n, timeout))
      result.push_back(std::move(x.r));
    return result;
  }

  /// Reads every partition of `topic` from its start, without joining a group (no ~3 s join).
  void read_from_start(const std::string& topic) {
    auto* list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p)
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    auto err = rd_kafka_assign(rk_, list);
    rd_kafka_topic_partition_list_destroy(list);
    REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  /// Polls what this client reads until `n` records arrived or `timeout` passed.
  std::vector<received> poll(std::size_t n, std::chrono::milliseconds timeout) {
    std::vector<received> result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (result.size() < n && std::chrono::steady_clock::now() < deadline) {
      auto* m = rd_kafka_consumer_poll(rk_, 50);
      if (m == nullptr)
        continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        result.push_back({record_of(*m), rd_kafka_message_timestamp(m, nullptr)});
      rd_kafka_message_destroy(m);
    }
    return result;
  }

  /// The offsets committed to this client's group for each partition of `topic` (-1: none).
  std::vector<std::int64_t> committed(const std::string& topic) {
    auto* list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p)
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
    auto err = rd_kafka_committed(rk_, list, 10'000);
    std::vector<std::int64_t> result;
    for (int p = 0; p < partitions; ++p)
      result.push_back(list->elems[p].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                           list->elems[p].offset >= 0
                         ? list->elems[p].offset
                         : -1);
    rd_kafka_topic_partition_list_destroy(list);
    REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR);
    return result;
  }

  /// The records of `topic` consumed by this client's group: its committed offsets added up.
  std::int64_t committed_total(const std::string& topic) {
    std::int64_t total = 0;
    for (auto o : committed(topic))
      total += std::max<std::int64_t>(o, 0);
    return total;
  }

private:
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    auto* d = static_cast<delivery*>(m->_private);
    d->partition = m->partition;
    d->offset = m->offset;
    d->err = m->err;
  }

  static depot::cloudevents::record record_of(const rd_kafka_message_t& m) {
    depot::cloudevents::record r;
    r.topic = rd_kafka_topic_name(m.rkt);
    r.partition = m.partition;
    r.offset = m.offset;
    if (m.key != nullptr)
      r.key.emplace(static_cast<const char*>(m.key), m.key_len);
    if (m.payload != nullptr)
      r.value.assign(static_cast<const char*>(m.payload), m.len);
    rd_kafka_headers_t* hs = nullptr;
    if (rd_kafka_message_headers(&m, &hs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name;
      const void* value;
      std::size_t size;
      for (std::size_t i = 0;
           rd_kafka_header_get_all(hs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
        r.headers.emplace_back(name, std::string{static_cast<const char*>(value), size});
    }
    return r;
  }

  rd_kafka_t* rk_;
  bool subscribed_ = false;
};

std::string header_of(const depot::cloudevents::record& r, const std::string& name) {
  for (const auto& [n, v] : r.headers)
    if (n == name)
      return v;
  return {};
}

/// A CloudEvent of `type` with `data` on `topic` from a client, id `id`, as a record.
depot::cloudevents::record event_record(
  const std::string& topic, const std::string& id, std::string data,
  depot::cloudevents_mode mode = depot::cloudevents_mode::binary,
  std::string type = "shop.place-order") {
  depot::envelope e;
  e.id = id;
  e.message_type = std::move(type);
  e.body = std::move(data);
  return depot::cloudevents::to_record(e, topic, "urn:test:client", mode);
}

/// A command to place order `order_id`, with a fresh id.
depot::cloudevents::record order_record(const std::string& topic, const std::string& order_id) {
  return event_record(topic, depot::new_envelope_id(),
                      fmt::format(R"({{"order_id":"{}","amount":1}})", order_id));
}

/// `r` without header `name`.
depot::cloudevents::record without_header(depot::cloudevents::record r, const std::string& name) {
  std::erase_if(r.headers, [&](const auto& h) { return h.first == name; });
  return r;
}

/// Makes `app` handle place_order by recording each in table effects of `s` (created here), and
/// listen to `topic` for it; returns the listener, to declare more of it.
depot::kafka_listener& listen_for_orders(depot::routing& app, test_schema& s,
                                         const std::string& topic) {
  create_effects_table(s);
  auto effects = s.table("effects");
  app.handle<place_order>(
    [effects](const place_order&, depot::context& ctx) { record_effect(ctx, effects, "placed"); });
  return app.listen_to_kafka({topic});
}

/// Node settings on `s` with Kafka at `cluster`.
depot::node_settings kafka_config(const test_schema& s, const depot::embedded_kafka& cluster) {
  auto settings = s.node_config();
  settings.kafka = cluster.bootstrap();
  return settings;
}

/// Holds an exclusive lock on one table of a test schema on a connection of its own, until
/// released or destroyed. Declare it after the node so that it goes first: the node's stop
/// waits for work that waits for the lock.
class table_lock {
public:
  table_lock(const test_schema& s, const std::string& table)
    : sql_(depot::persistence::open_session(s.db())) {
    *sql_ << "BEGIN";
    *sql_ << "LOCK TABLE " + s.table(table) + " IN ACCESS EXCLUSIVE MODE";
  }
  ~table_lock() { release(); }
  table_lock(const table_lock&) = delete;
  table_lock& operator=(const table_lock&) = delete;

  void release() {
    if (sql_) {
      *sql_ << "COMMIT";
      sql_.reset();
    }
  }

private:
  std::unique_ptr<soci::session> sql_;
};

} // namespace

TEST_CASE("a handler's published events reach Kafka as binary CloudEvents after its commit") {
  test_schema s;
  depot::embedded_kafka cluster;
  cluster.create_topic("shop.events", partitions);
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
  kafka_client reader{cluster.bootstrap(), RD_KAFKA_CONSUMER};
  reader.read_from_start("shop.events");
  auto events = reader.poll(2, 10s);
  REQUIRE(events.size() == 2);
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM outgoing") == 0; }));
  CHECK(reader.poll(1, 500ms).empty()); // the rolled-back event was never in the outbox
  std::map<std::string, depot::cloudevents::record> by_key;
  for (auto& e : events)
    by_key[e.r.key.value_or("")] = e.r;
  REQUIRE(by_key.count("o-1") == 1);
  auto& e = by_key["o-1"];
  CHECK(header_of(e, "ce_specversion") == "1.0");
  CHECK(header_of(e, "ce_type") == "shop.order-placed");
  CHECK(header_of(e, "ce_source") == "urn:test:shop");
  CHECK(header_of(e, "ce_partitionkey") == "o-1");
  CHECK(header_of(e, "content-type") == "application/json");
  CHECK(e.value == R"({"order_id":"o-1","amount":5})");
  CHECK(by_key.count("o-3") == 1);
  n.stop();
}

TEST_CASE("a Kafka listener stores each record once and dead-letters what is no event") {
  test_schema s;
  depot::embedded_kafka cluster;
  depot::routing app;
  listen_for_orders(app, s, "shop.commands").in_group("it-shop");
  depot::node n{app, kafka_config(s, cluster)};
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

TEST_CASE(
  "an outbox row relayed again after its completion was lost reaches Kafka again with the same "
  "CloudEvents id") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.resent";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  app.publish<order_placed>().to_kafka(topic);
  test_store store{s.store_config()};
  store.apply_schema();
  // As a handler's commit leaves it: stored for the relay, not produced yet.
  auto e =
    make_envelope("kafka://" + topic, "shop.order-placed", R"({"order_id":"o-1","amount":5})");
  e.key = "o-1";
  store.outbox.insert({e});
  REQUIRE(s.number("SELECT count(*) FROM outgoing") == 1);

  depot::node n{app, kafka_config(s, cluster)};
  n.start();
  kafka_client reader{cluster.bootstrap(), RD_KAFKA_CONSUMER};
  reader.read_from_start(topic);
  auto first = reader.poll(1, 10s);
  REQUIRE(first.size() == 1);
  CHECK(header_of(first[0].r, "ce_id") == e.id);
  CHECK(first[0].r.key == std::optional<std::string>{"o-1"});
  CHECK(first[0].r.value == e.body);
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM outgoing") == 0; }));

  // The relay produced it, then lost the delete (a crash between the delivery report and the
  // completion): the row is there again, with the same id.
  store.outbox.insert({e});
  auto second = reader.poll(1, 10s);
  REQUIRE(second.size() == 1);
  CHECK(header_of(second[0].r, "ce_id") == e.id); // consumers dedup on it
  CHECK(second[0].r.value == e.body);
  CHECK(second[0].r.key == std::optional<std::string>{"o-1"});
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM outgoing") == 0; }));
  CHECK(reader.poll(1, 500ms).empty()); // produced twice in all, not more
  n.stop();
}

TEST_CASE(
  "every published event reaches Kafka through failed produce requests and a broker outage, "
  "and the outbox ends empty") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.faults";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  app.publish<order_placed>().to_kafka(topic);
  depot::node n{app, kafka_config(s, cluster)};
  n.start();
  kafka_client reader{cluster.bootstrap(), RD_KAFKA_CONSUMER};
  reader.read_from_start(topic);

  std::set<std::string> sent;
  int next_order = 0;
  auto publish = [&](int count) {
    std::vector<std::string> bodies;
    for (int i = 0; i < count; ++i, ++next_order)
      bodies.push_back(fmt::format(R"({{"order_id":"o-{}","amount":{}}})", next_order, next_order));
    for (auto& id : n.send_bodies("shop.order-placed", bodies, {}, 0, depot::dispatch::publish))
      sent.insert(id);
  };
  std::set<std::string> arrived;
  auto read = [&](std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (arrived.size() < sent.size() && std::chrono::steady_clock::now() < deadline)
      for (auto& x : reader.poll(sent.size() - arrived.size(), 200ms))
        arrived.insert(header_of(x.r, "ce_id"));
  };

  cluster.fail_requests(0 /* Produce */, 5, 6 /* NOT_LEADER_FOR_PARTITION */);
  publish(10);
  cluster.fail_requests(0, 5, 7 /* REQUEST_TIMED_OUT */);
  publish(10);
  read(10s);
  CHECK(arrived.size() == 20);

  // A permanent error: librdkafka gives up on the batch, the relay keeps the rows and tries
  // again later.
  cluster.fail_requests(0, 12, 10 /* MESSAGE_TOO_LARGE */); // a few attempts' worth
  publish(10);
  CHECK(wait_until([&] { return s.number("SELECT coalesce(max(attempts), 0) FROM outgoing") > 0; },
                   5s));
  read(10s);
  CHECK(arrived.size() == 30);

  cluster.set_broker_down(1, true);
  publish(10);
  std::this_thread::sleep_for(2s);
  CHECK(s.number("SELECT count(*) FROM outgoing") >= 10); // what was published meanwhile waits
  cluster.set_broker_down(1, false);
  publish(10);
  read(15s);
  CHECK(arrived.size() == 50);
  CHECK(arrived == sent);
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM outgoing") == 0; }));
  n.stop();
}

TEST_CASE("a topic in structured mode gets each event as one application/cloudevents+json value") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.structured";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  app.publish<order_placed>().to_kafka(topic, depot::cloudevents_mode::structured);
  auto settings = kafka_config(s, cluster);
  settings.service_uri = "urn:test:shop";
  depot::node n{app, settings};
  n.start();
  auto before = depot::now_micros();
  auto ids = n.send_bodies("shop.order-placed", {R"({"order_id":"o-7","amount":12})"}, {}, 0,
                           depot::dispatch::publish);
  REQUIRE(ids.size() == 1);
  kafka_client reader{cluster.bootstrap(), RD_KAFKA_CONSUMER};
  reader.read_from_start(topic);
  auto got = reader.poll(1, 10s);
  REQUIRE(got.size() == 1);
  const auto& r = got[0].r;
  CHECK(header_of(r, "content-type") == "application/cloudevents+json");
  CHECK(header_of(r, "ce_id").empty()); // no binary-mode attributes
  CHECK(r.key == std::optional<std::string>{"o-7"});

  rapidjson::Document doc;
  doc.Parse(r.value.data(), r.value.size());
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  auto text = [&](const char* name) -> std::string {
    if (!doc.HasMember(name) || !doc[name].IsString())
      return "<missing>";
    return {doc[name].GetString(), doc[name].GetStringLength()};
  };
  CHECK(text("specversion") == "1.0");
  CHECK(text("id") == ids[0]);
  CHECK(text("type") == "shop.order-placed");
  CHECK(text("source") == "urn:test:shop");
  CHECK(text("partitionkey") == "o-7");
  auto time = text("time");
  REQUIRE(time.size() >= 20);
  CHECK(time.back() == 'Z');
  // The store's clock is this machine's: the event was stored after `before`, within a minute.
  CHECK(time.substr(0, 16) >= depot::iso8601(before).substr(0, 16));
  CHECK(time.substr(0, 16) <= depot::iso8601(before + 60'000'000).substr(0, 16));
  REQUIRE(doc.HasMember("data"));
  REQUIRE(doc["data"].IsObject());
  CHECK(doc["data"]["order_id"] == "o-7");
  CHECK(doc["data"]["amount"].GetInt64() == 12);

  auto back = depot::cloudevents::from_record(r); // and a listener reads it as it was sent
  CHECK(back.id == ids[0]);
  CHECK(back.message_type == "shop.order-placed");
  CHECK(back.body == R"({"order_id":"o-7","amount":12})");
  n.stop();
}

TEST_CASE("a scheduled event routed only to Kafka is produced when it is due, not before") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.later";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  app.publish<order_placed>().to_kafka(topic);
  app.handle<place_order>([](const place_order& m, depot::context& ctx) {
    ctx.schedule(order_placed{m.order_id, m.amount}, 1500ms);
  });
  depot::node n{app, kafka_config(s, cluster)};
  n.start();
  kafka_client reader{cluster.bootstrap(), RD_KAFKA_CONSUMER};
  reader.read_from_start(topic);

  auto ms_now = [] { return depot::now_micros() / 1000; };
  auto sent_at = ms_now();
  n.schedule(order_placed{"later-node", 1}, 1500ms); // a send: no local queue, so Kafka
  n.send(place_order{"later-handler", 2});           // its handler schedules the event
  n.publish(order_placed{"now", 3});                 // the relay is at work meanwhile
  auto now = reader.poll(1, 10s);
  REQUIRE(now.size() == 1);
  CHECK(now[0].r.key == std::optional<std::string>{"now"});
  // Both wait in the outbox (the handler's as soon as it ran), while they are not due.
  auto both_wait = wait_until([&] { return s.number("SELECT count(*) FROM outgoing") == 2; }, 1s);
  if (ms_now() < sent_at + 1400)
    CHECK(both_wait);
  auto later = reader.poll(2, 10s);
  REQUIRE(later.size() == 2);
  for (const auto& x : later) {
    CAPTURE(*x.r.key);
    CHECK(x.timestamp_ms >= sent_at + 1500); // produced after it was due
    CHECK(x.timestamp_ms < sent_at + 5000);  // and soon after
    CHECK(header_of(x.r, "ce_type") == "shop.order-placed");
  }
  std::set<std::string> keys{*later[0].r.key, *later[1].r.key};
  CHECK(keys == std::set<std::string>{"later-node", "later-handler"});
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM outgoing") == 0; }));
  n.stop();
}

TEST_CASE(
  "a Kafka listener commits its group's offsets only after the records' insert committed, and "
  "stores a redelivered event once") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.commands.commit";
  const std::string group = "it-commit";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  listen_for_orders(app, s, topic).in_group(group);
  depot::node n{app, kafka_config(s, cluster)};
  n.start();
  kafka_client writer{cluster.bootstrap(), RD_KAFKA_PRODUCER};
  kafka_client offsets{cluster.bootstrap(), RD_KAFKA_CONSUMER, group}; // never joins: reads only

  std::vector<depot::cloudevents::record> first;
  for (int i = 0; i < 4; ++i)
    first.push_back(order_record(topic, fmt::format("o-{}", i)));
  writer.produce_all(first);
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 4; }, 15s));
  REQUIRE(wait_until([&] { return offsets.committed_total(topic) == 4; }));

  {
    // While the inbox cannot take them, the listener holds the records it consumed: the
    // group's offsets stay where they were.
    table_lock lock{s, "incoming"};
    std::vector<depot::cloudevents::record> blocked;
    for (int i = 4; i < 10; ++i)
      blocked.push_back(order_record(topic, fmt::format("o-{}", i)));
    writer.produce_all(blocked);
    REQUIRE(wait_until([&] {
      return s.number(
               "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
               "query LIKE '%" +
               s.table("received_ids") + "%'") >= 1;
    }));
    std::this_thread::sleep_for(300ms);
    CHECK(offsets.committed_total(topic) == 4);
    CHECK(s.number("SELECT count(*) FROM effects") == 4);
  }
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 10; }));
  CHECK(wait_until([&] { return offsets.committed_total(topic) == 10; }));

  // One event twice, the second time under another key (so likely in another partition).
  auto again = order_record(topic, "o-again");
  writer.produce(again);
  again.key = "another-key";
  writer.produce(again);
  REQUIRE(wait_until([&] { return offsets.committed_total(topic) == 12; }));
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 11; }));
  n.stop();

  CHECK(offsets.committed_total(topic) == 12);                // every record consumed
  CHECK(s.number("SELECT count(*) FROM received_ids") == 11); // every event stored once
  CHECK(s.number("SELECT count(*) FROM effects") == 11);
  CHECK(s.number("SELECT count(*) FROM effects WHERE envelope_id = '" + header_of(again, "ce_id") +
                 "'") == 1);
}

TEST_CASE(
  "a Kafka listener dead-letters a record of an unknown type, with bad data, without a type or "
  "with a structured value that is no JSON, and goes on") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.commands.bad";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  listen_for_orders(app, s, topic).in_group("it-bad");
  depot::node n{app, kafka_config(s, cluster)};
  n.start();
  kafka_client writer{cluster.bootstrap(), RD_KAFKA_PRODUCER};

  struct bad_record {
    std::string kind;
    std::string type; ///< the dead letter's message type
    depot::cloudevents::record r;
  };
  auto good_data = std::string{R"({"order_id":"o-1","amount":1})"};
  depot::cloudevents::record no_json;
  no_json.topic = topic;
  no_json.value = "this is { not JSON";
  no_json.headers = {{"content-type", "application/cloudevents+json"}};
  std::vector<bad_record> bad{
    {"unknown type", "shop.nobody-handles",
     event_record(topic, depot::new_envelope_id(), good_data, depot::cloudevents_mode::binary,
                  "shop.nobody-handles")},
    {"malformed data", "shop.place-order",
     event_record(topic, depot::new_envelope_id(), R"({"order_id": "o-1", )")},
    {"data of the wrong shape", "shop.place-order",
     event_record(topic, depot::new_envelope_id(), R"({"order_id": 5, "amount": "five"})")},
    {"no ce_type", "",
     without_header(event_record(topic, depot::new_envelope_id(), good_data), "ce_type")},
    {"structured value that is no JSON", "", no_json},
  };
  std::vector<depot::cloudevents::record> records;
  for (auto& b : bad) {
    b.r.key = "one-partition"; // in order, before the good one
    records.push_back(b.r);
  }
  auto delivered = writer.produce_all(records);
  auto good = order_record(topic, "o-good");
  good.key = "one-partition";
  auto good_at = writer.produce(good);

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }, 15s));
  CHECK(s.text("SELECT envelope_id::text FROM effects") == header_of(good, "ce_id"));
  CHECK(good_at.offset == delivered.back().offset + 1);
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM dead_letters") == 5; }));
  for (std::size_t i = 0; i < bad.size(); ++i) {
    CAPTURE(bad[i].kind);
    auto at = fmt::format("headers->>'kafka-partition' = '{}' AND headers->>'kafka-offset' = '{}'",
                          delivered[i].partition, delivered[i].offset);
    CHECK(s.number("SELECT count(*) FROM dead_letters WHERE " + at) == 1);
    CHECK(s.text("SELECT queue FROM dead_letters WHERE " + at) == "kafka://" + topic);
    CHECK(s.text("SELECT headers->>'kafka-topic' FROM dead_letters WHERE " + at) == topic);
    CHECK(s.text("SELECT replayable::text FROM dead_letters WHERE " + at) == "false");
    CHECK(s.text("SELECT body FROM dead_letters WHERE " + at) ==
          depot::cloudevents::base64_encode(bad[i].r.value));
    CHECK(s.text("SELECT message_type FROM dead_letters WHERE " + at) == bad[i].type);
    CHECK_FALSE(s.text("SELECT exception_message FROM dead_letters WHERE " + at).empty());
    if (!bad[i].type.empty()) // an event: its id is the letter's
      CHECK(s.text("SELECT id::text FROM dead_letters WHERE " + at) ==
            header_of(bad[i].r, "ce_id"));
  }
  CHECK(s.text("SELECT exception_message FROM dead_letters WHERE headers->>'kafka-offset' = '" +
               std::to_string(delivered[3].offset) + "'")
          .find("ce_type") != std::string::npos);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE queue <> 'shop.place-order'") == 0);
  n.stop();
}

// The store refuses such a type (Postgres text is UTF-8) with a permanent error: retrying the
// batch would hold the listener for ever.
TEST_CASE("a Kafka listener dead-letters a record whose type is not UTF-8 text, and goes on") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.commands.bytes";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  listen_for_orders(app, s, topic).in_group("it-bytes");
  depot::node n{app, kafka_config(s, cluster)};
  n.start();
  kafka_client writer{cluster.bootstrap(), RD_KAFKA_PRODUCER};
  auto bad = event_record(topic, depot::new_envelope_id(), R"({"order_id":"o-1","amount":1})",
                          depot::cloudevents_mode::binary, "shop.\xff\xfe-order");
  bad.key = "one-partition";
  auto good = order_record(topic, "o-good");
  good.key = "one-partition";
  writer.produce_all({bad, good});
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }, 10s));
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM dead_letters") == 1; }, 3s));
  CHECK(s.text("SELECT body FROM dead_letters") == depot::cloudevents::base64_encode(bad.value));
  n.stop();
}

TEST_CASE(
  "a Kafka listener keeping its offsets in Postgres goes on after a restart from where they say, "
  "without the group's committed offsets") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.commands.pg";
  const std::string group = "it-pg-offsets";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  listen_for_orders(app, s, topic).in_group(group).keep_offsets_in(depot::offset_store::postgres);
  auto settings = kafka_config(s, cluster);
  // The mock cluster keeps a member that left until its session times out (45 s by default),
  // and the next member's join waits for it.
  settings.kafka_properties = "session.timeout.ms=6000,heartbeat.interval.ms=1000";
  kafka_client writer{cluster.bootstrap(), RD_KAFKA_PRODUCER};
  kafka_client group_offsets{cluster.bootstrap(), RD_KAFKA_CONSUMER, group}; // never joins

  std::map<std::int32_t, std::int64_t> next; // partition → next offset, as produced
  auto produce = [&](int from, int to) {
    std::vector<depot::cloudevents::record> rs;
    for (int i = from; i < to; ++i)
      rs.push_back(order_record(topic, fmt::format("o-{}", i)));
    for (const auto& d : writer.produce_all(rs))
      next[d.partition] = std::max(next[d.partition], d.offset + 1);
  };
  auto sql = depot::persistence::open_session(s.db());
  auto offsets_kept = [&] {
    std::map<std::int32_t, std::int64_t> kept;
    soci::rowset<soci::row> rows =
      (sql->prepare << "SELECT partition, next_offset FROM " + s.table("kafka_offsets") +
                         " WHERE consumer_group = :g AND topic = :t",
       soci::use(group), soci::use(topic));
    for (const auto& r : rows)
      kept[r.get<int>(0)] = r.get<long long>(1);
    return kept;
  };

  // Every commit to the group fails (OFFSET_METADATA_TOO_LARGE, which librdkafka does not
  // retry): only Postgres knows where the group is.
  cluster.fail_requests(8 /* OffsetCommit */, 1000, 12);
  produce(0, 8);
  {
    depot::node n{app, settings};
    n.start();
    REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 8; }, 15s));
    CHECK(wait_until([&] { return offsets_kept() == next; }));
    n.stop();
  }
  CHECK(group_offsets.committed_total(topic) == 0);
  // The ids stored are forgotten (their dedup window passed): were the records read again from
  // the start, they would be stored again.
  s.exec("DELETE FROM received_ids");
  produce(8, 13);
  {
    depot::node n{app, settings};
    n.start();
    REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") >= 13; }, 15s));
    CHECK(wait_until([&] { return offsets_kept() == next; }));
    std::this_thread::sleep_for(500ms); // time for old records to come again, were they read
    CHECK(s.number("SELECT count(*) FROM received_ids") == 5); // only the new ones were stored
    CHECK(s.number("SELECT count(*) FROM effects") == 13);
    CHECK(s.number("SELECT count(DISTINCT envelope_id) FROM effects") == 13);
    n.stop();
  }
  CHECK(group_offsets.committed_total(topic) == 0);
}

TEST_CASE(
  "a Kafka listener leaves records in Kafka while its queue holds more ready envelopes than its "
  "bound, and stores them once the queue drained") {
  test_schema s;
  create_effects_table(s);
  std::atomic<bool> open{true}; // the handler waits while closed (20 s at most)
  depot::embedded_kafka cluster;
  const std::string topic = "shop.commands.busy";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  auto effects = s.table("effects");
  app
    .handle<place_order>([effects, &open](const place_order&, depot::context& ctx) {
      auto deadline = std::chrono::steady_clock::now() + 20s;
      while (!open && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
      record_effect(ctx, effects, "placed");
    })
    .concurrency(1);
  app.listen_to_kafka({topic}).in_group("it-busy").pause_above(5);
  depot::node n{app, kafka_config(s, cluster)};
  struct opener {
    std::atomic<bool>& gate;
    ~opener() { gate = true; } // before the node stops
  } open_at_end{open};
  n.start();
  kafka_client writer{cluster.bootstrap(), RD_KAFKA_PRODUCER};
  auto stored = [&] { return s.number("SELECT count(*) FROM received_ids"); };
  auto ready = [&] { return s.number("SELECT count(*) FROM incoming WHERE status = 'incoming'"); };
  auto produce = [&](int from, int to) {
    std::vector<depot::cloudevents::record> rs;
    for (int i = from; i < to; ++i)
      rs.push_back(order_record(topic, fmt::format("o-{}", i)));
    writer.produce_all(rs);
  };

  produce(0, 1);
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }, 15s));
  open = false;
  produce(1, 21);
  REQUIRE(wait_until([&] { return stored() == 21; }));
  // The listener checks the backlog every 500 ms: by now it saw 20 ready envelopes, above 5.
  std::this_thread::sleep_for(2s);
  CHECK(ready() > 5);
  produce(21, 200);
  long long most_ready = 0;
  for (auto until = std::chrono::steady_clock::now() + 1500ms;
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(50ms))
    most_ready = std::max(most_ready, ready());
  CHECK(stored() == 21);   // the other 179 wait in Kafka
  CHECK(most_ready <= 21); // the backlog did not grow
  open = true;
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 200; }, 15s));
  CHECK(stored() == 200);
  n.stop();
}

TEST_CASE("the outbox relay waits its growing backoff before it produces a failed batch again") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.backoff";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  app.publish<order_placed>().to_kafka(topic);
  depot::node n{app, kafka_config(s, cluster)};
  n.start();
  kafka_client reader{cluster.bootstrap(), RD_KAFKA_CONSUMER};
  reader.read_from_start(topic);
  // Four permanent failures: the relay waits 100, 200, 400 and 800 ms after them.
  cluster.fail_requests(0 /* Produce */, 4, 10 /* MESSAGE_TOO_LARGE */);
  auto published_ms = depot::now_micros() / 1000;
  n.publish(order_placed{"o-1", 1});
  auto got = reader.poll(1, 15s);
  REQUIRE(got.size() == 1);
  CHECK(got[0].timestamp_ms - published_ms >= 1500); // when it was produced the fifth time
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM outgoing") == 0; }));
  n.stop();
}

TEST_CASE("when the node that relays stops, another node of the store takes the relay over") {
  test_schema s;
  depot::embedded_kafka cluster;
  const std::string topic = "shop.handover";
  cluster.create_topic(topic, partitions);
  depot::routing app;
  app.publish<order_placed>().to_kafka(topic);
  auto first = std::make_unique<depot::node>(app, kafka_config(s, cluster));
  first->start();
  kafka_client reader{cluster.bootstrap(), RD_KAFKA_CONSUMER};
  reader.read_from_start(topic);
  first->publish(order_placed{"o-1", 1});
  REQUIRE(reader.poll(1, 10s).size() == 1); // the first node holds the relay lock
  depot::node second{app, kafka_config(s, cluster)};
  second.start();
  first->stop(); // its connections close, and the relay lock with them
  first.reset();
  second.publish(order_placed{"o-2", 2});
  auto relayed = reader.poll(1, 10s);
  REQUIRE(relayed.size() == 1);
  CHECK(relayed[0].r.key == std::optional<std::string>{"o-2"});
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM outgoing") == 0; }));
  second.stop();
}

TEST_CASE("a listener on the leader only consumes while its node leads, and not before") {
  test_schema s;
  depot::embedded_kafka cluster;
  depot::routing app;
  listen_for_orders(app, s, "shop.open").in_group("it-open");
  app.listen_to_kafka({"shop.exclusive"}).in_group("it-exclusive").on_leader_only();
  // Another session holds the leader's lock: the node does not lead.
  auto usurper = std::make_unique<test_store>(s.store_config());
  REQUIRE(usurper->nodes.try_lead());
  depot::node n{app, kafka_config(s, cluster)};
  n.start();
  kafka_client writer{cluster.bootstrap(), RD_KAFKA_PRODUCER};
  auto order = [](const std::string& topic, const std::string& id) {
    depot::envelope cmd;
    cmd.id = depot::new_envelope_id();
    cmd.message_type = "shop.place-order";
    cmd.body = fmt::format(R"({{"order_id":"{}","amount":1}})", id);
    return depot::cloudevents::to_record(cmd, topic, "urn:test:client",
                                         depot::cloudevents_mode::binary);
  };
  writer.produce(order("shop.exclusive", "o-exclusive"));
  writer.produce(order("shop.open", "o-open"));
  // The plain listener joined its group and stored its record; the other stands by.
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") >= 1; }, 30s));
  std::this_thread::sleep_for(1s);
  CHECK(s.number("SELECT count(*) FROM effects") == 1);
  usurper.reset(); // its connection closes, and the lock with it: the node leads next beat
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 2; }, 30s));
  n.stop();
}
