// The kafka case without depot: the plain librdkafka clients every path shares (commands
// producer, events reader, the measurement around them), the baseline and the raw path.
// The baseline does by hand, through librdkafka and libpq, the durable steps of depot's path,
// one thread per stage, on the same cluster and database:
//   ingest: consumes the commands topic (consumer group, no auto-commit), batch-inserts up to
//           1000 records in one statement into an `incoming`-shaped table (INSERT ... SELECT
//           FROM unnest(...) ON CONFLICT DO NOTHING: a redelivered record is dropped by id),
//           then commits the group's offsets (synchronously, as depot's listener does) and wakes
//           the worker;
//   worker: BEGIN; claims a batch (DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED
//           LIMIT n) RETURNING ...); inserts one outbox row per command, its body the command's
//           data; COMMIT; wakes the relay;
//   relay:  BEGIN; takes up to 1000 outbox rows (DELETE ... SKIP LOCKED RETURNING), produces
//           them as binary CloudEvents (idempotent producer, acks=all), waits for every
//           delivery report (rd_kafka_flush) and COMMITs, or rolls back when one failed.
// No depot code here: this is what depot's Kafka path is measured against.
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "kafka.hpp"
#include "raw_queue.hpp"

namespace bench::kafka {

namespace {

using namespace std::chrono_literals;

/// Records the ingest stage stores in one statement at most (as depot's listener).
constexpr int ingest_batch = 1000;
/// Outbox rows the relay produces at a time (as depot's relay).
constexpr int relay_batch = 1000;
/// How long the warm-up command may take to come through (group joins included).
constexpr auto warm_up_limit = 60s;

std::string header_of(const rd_kafka_message_t* m, const char* name) {
  rd_kafka_headers_t* headers = nullptr;
  const void* value = nullptr;
  std::size_t size = 0;
  if (rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      value == nullptr)
    return {};
  return {static_cast<const char*>(value), size};
}

/// Sets `name` on `conf`; throws naming it when librdkafka refuses.
void set(rd_kafka_conf_t* conf, const char* name, const std::string& value) {
  char reason[512];
  if (rd_kafka_conf_set(conf, name, value.c_str(), reason, sizeof reason) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error{fmt::format("kafka: {}={}: {}", name, value, reason)};
  }
}

client make(rd_kafka_type_t type, rd_kafka_conf_t* conf) {
  char reason[512];
  auto* rk = rd_kafka_new(type, conf, reason, sizeof reason);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error{fmt::format("kafka: cannot create a client: {}", reason)};
  }
  return client{rk};
}

/// Appends `text` as an element of a Postgres array literal: quoted, `\` and `"` escaped.
void append_element(std::string& out, std::string_view text) {
  if (out.size() > 1)
    out += ',';
  out += '"';
  for (char c : text) {
    if (c == '\\' || c == '"')
      out += '\\';
    out += c;
  }
  out += '"';
}

/// Counts delivery reports (the commands producer's and the baseline relay's).
struct deliveries {
  std::int64_t delivered = 0;
  std::int64_t failed = 0;
  std::string failure;
};

void count_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto& d = *static_cast<deliveries*>(opaque);
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++d.delivered;
  } else {
    ++d.failed;
    d.failure = rd_kafka_err2str(m->err);
  }
}

/// Produces `value` to `topic` with `headers` (which it takes), waiting for room in
/// librdkafka's queue when it is full.
void produce(rd_kafka_t* p, const std::string& topic, std::string_view key, std::string_view value,
             rd_kafka_headers_t* headers) {
  for (;;) {
    auto err = rd_kafka_producev(
      p, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
      return;
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_headers_destroy(headers); // produce frees them only on success
      throw std::runtime_error{
        fmt::format("kafka: produce to {}: {}", topic, rd_kafka_err2str(err))};
    }
    rd_kafka_poll(p, 10);
  }
}

/// The binary-mode CloudEvent headers of event `id` of `type` from `source`.
rd_kafka_headers_t* event_headers(std::string_view id, std::string_view type,
                                  std::string_view source, std::string_view time) {
  auto* h = rd_kafka_headers_new(6);
  auto add = [h](const char* name, std::string_view value) {
    rd_kafka_header_add(h, name, -1, value.data(), static_cast<ssize_t>(value.size()));
  };
  add("ce_specversion", "1.0");
  add("ce_id", id);
  add("ce_source", source);
  add("ce_type", type);
  if (!time.empty())
    add("ce_time", time);
  add("content-type", "application/json");
  return h;
}

/// Consumes `f.events` on its own thread into `lat`: each record's body carries "seq" and
/// "sent_ns"; the warm-up command (seq -1) is only noted.
class reader {
public:
  reader(const flow& f, latencies& lat)
    : consumer_(make_consumer(f.brokers, f.group, f.events, true)), lat_(lat) {
    thread_ = std::thread{[this] { run(); }};
  }
  ~reader() {
    stop_ = true;
    thread_.join();
  }
  reader(const reader&) = delete;
  reader& operator=(const reader&) = delete;

  [[nodiscard]] bool warmed() const { return warmed_.load(); }
  /// When the last new event was consumed.
  [[nodiscard]] std::int64_t last_ns() const { return last_ns_.load(); }
  [[nodiscard]] std::int64_t duplicates() const { return duplicates_.load(); }
  [[nodiscard]] std::string error() const {
    std::lock_guard guard{m_};
    return error_;
  }

private:
  void run() {
    while (!stop_) {
      auto* m = rd_kafka_consumer_poll(consumer_.get(), 100);
      if (m == nullptr)
        continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        auto t = now_ns();
        std::string_view body{static_cast<const char*>(m->payload), m->len};
        auto seq = number_after(body, "\"seq\":");
        if (seq == -1) {
          warmed_ = true;
        } else {
          lat_.sent(seq, number_after(body, "\"sent_ns\":"));
          if (lat_.started(seq, t))
            last_ns_ = t;
          else
            ++duplicates_;
        }
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        std::lock_guard guard{m_};
        error_ = rd_kafka_message_errstr(m);
      }
      rd_kafka_message_destroy(m);
    }
  }

  client consumer_;
  latencies& lat_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> warmed_{false};
  std::atomic<std::int64_t> last_ns_{0};
  std::atomic<std::int64_t> duplicates_{0};
  mutable std::mutex m_;
  std::string error_;
  std::thread thread_; // last: started once the rest is ready
};

/// A wake-up from one stage to the next.
struct wake_up {
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t count = 0;

  void notify() {
    {
      std::lock_guard guard{m};
      ++count;
    }
    cv.notify_one();
  }
  [[nodiscard]] std::uint64_t seen() {
    std::lock_guard guard{m};
    return count;
  }
  /// Waits until a notification after `seen`, at most 100 ms.
  void wait(std::uint64_t seen) {
    std::unique_lock lock{m};
    cv.wait_for(lock, 100ms, [&] { return count != seen; });
  }
};

/// The threads of the baseline's stages and how they stop.
class stages {
public:
  template <typename F>
  void start(F f) {
    threads_.emplace_back([this, f = std::move(f)] {
      try {
        f(stop_);
      } catch (...) {
        std::lock_guard guard{m_};
        if (!error_)
          error_ = std::current_exception();
      }
    });
  }
  [[nodiscard]] bool failed() {
    std::lock_guard guard{m_};
    return error_ != nullptr;
  }
  /// Stops and joins every stage; rethrows the first error of one.
  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      t.join();
    threads_.clear();
    if (error_)
      std::rethrow_exception(error_);
  }
  ~stages() {
    stop_ = true;
    for (auto& t : threads_)
      t.join();
  }

private:
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

std::string table(std::string_view name) {
  return fmt::format("{}.{}", raw::schema, name);
}

} // namespace

void client_deleter::operator()(rd_kafka_t* rk) const {
  if (rd_kafka_type(rk) == RD_KAFKA_CONSUMER)
    rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

client make_producer(const std::string& brokers, bool idempotent,
                     void (*on_delivery)(rd_kafka_t*, const rd_kafka_message_t*, void*),
                     void* opaque) {
  auto* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", brokers);
  set(conf, "acks", "all");
  set(conf, "linger.ms", "5");
  set(conf, "enable.idempotence", idempotent ? "true" : "false");
  if (on_delivery != nullptr)
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_opaque(conf, opaque);
  return make(RD_KAFKA_PRODUCER, conf);
}

client make_consumer(const std::string& brokers, const std::string& group, const std::string& topic,
                     bool auto_commit) {
  auto* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", brokers);
  set(conf, "group.id", group);
  set(conf, "auto.offset.reset", "earliest");
  set(conf, "enable.auto.commit", auto_commit ? "true" : "false");
  set(conf, "enable.partition.eof", "false");
  set(conf, "fetch.wait.max.ms", fetch_wait_ms);
  auto c = make(RD_KAFKA_CONSUMER, conf);
  rd_kafka_poll_set_consumer(c.get());
  auto* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  auto err = rd_kafka_subscribe(c.get(), topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw std::runtime_error{
      fmt::format("kafka: cannot subscribe to {}: {}", topic, rd_kafka_err2str(err))};
  return c;
}

std::string command_body(std::int64_t seq, std::int64_t sent_ns, int accounts) {
  return fmt::format(R"({{"account_id":"acct-{}","amount":1,"seq":{},"sent_ns":{}}})",
                     bank_account_of(seq, accounts), seq, sent_ns);
}

measurement measure(const options& o, const flow& f, const std::function<std::string()>& trouble) {
  latencies lat{o.messages};
  reader events{f, lat};
  deliveries reports;
  auto producer = make_producer(f.brokers, false, count_delivery, &reports);
  raw::uuid_source ids;
  auto produce_command = [&](std::int64_t seq) {
    auto body = command_body(seq, now_ns(), o.accounts);
    auto id = ids.next();
    auto key = fmt::format("acct-{}", bank_account_of(seq, o.accounts));
    produce(producer.get(), f.commands, key, body,
            event_headers(id, command_type, "urn:bench:producer", {}));
  };

  measurement m;
  m.messages = o.messages;
  produce_command(-1);
  rd_kafka_flush(producer.get(), 10'000);
  auto deadline = clock::now() + warm_up_limit;
  std::string problem;
  while (!events.warmed() && clock::now() < deadline && (problem = trouble()).empty())
    std::this_thread::sleep_for(1ms);
  if (!events.warmed()) {
    m.note =
      fmt::format("the warm-up command did not come through{}{}",
                  problem.empty() ? fmt::format(" in {} s", warm_up_limit.count()) : ": " + problem,
                  events.error().empty() ? "" : " (" + events.error() + ")");
    return m;
  }

  settle(o.db);
  const auto before = resources::sample(o.db);
  const auto t0 = now_ns();
  for (std::int64_t seq = 0; seq < o.messages; ++seq) {
    produce_command(seq);
    if (seq % 1000 == 999)
      rd_kafka_poll(producer.get(), 0);
  }
  deadline = clock::now() + std::chrono::seconds{o.timeout_s};
  while (lat.distinct() < o.messages && clock::now() < deadline && reports.failed == 0 &&
         (problem = trouble()).empty())
    rd_kafka_poll(producer.get(), 1);
  if (lat.distinct() < o.messages) {
    m.note = reports.failed > 0
               ? fmt::format("{} command(s) not delivered: {}", reports.failed, reports.failure)
             : !problem.empty()
               ? problem
               : fmt::format("timed out: {} of {} events consumed{}", lat.distinct(), o.messages,
                             events.error().empty() ? "" : " (" + events.error() + ")");
    return m;
  }
  const auto t_end = events.last_ns();
  m.used = resources::sample(o.db) - before;
  rd_kafka_flush(producer.get(), 10'000); // the last acknowledgements
  m.ok = true;
  m.seconds = static_cast<double>(t_end - t0) / 1e9;
  m.msgs_per_s = static_cast<double>(o.messages) / m.seconds;
  std::tie(m.p50_ms, m.p99_ms) = lat.percentiles();
  if (events.duplicates() > 0)
    m.note = fmt::format("{} event(s) consumed more than once", events.duplicates());
  return m;
}

measurement run_raw(const options& o, const flow& f) {
  return measure(o, f, [] { return std::string{}; });
}

measurement run_baseline(const options& o, const flow& f, const std::string& ingest_group) {
  {
    raw::connection admin{o.db};
    raw::create_queue(admin);
    admin.exec(fmt::format(
      "CREATE TABLE {} (id uuid PRIMARY KEY, destination text NOT NULL, message_type text NOT "
      "NULL, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), seq bigserial)",
      table("outgoing")));
    admin.exec(fmt::format("CREATE INDEX outgoing_order ON {} (seq)", table("outgoing")));
  }
  const std::string queue = command_type;
  wake_up to_worker, to_relay;
  stages run;

  run.start([&](const std::atomic<bool>& stop) {
    raw::connection db{o.db};
    db.prepare("ingest",
               fmt::format("INSERT INTO {} (id, queue, message_type, body, headers) SELECT * FROM "
                           "unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[]) "
                           "ON CONFLICT (id) DO NOTHING",
                           table("incoming")),
               5);
    auto consumer = make_consumer(f.brokers, ingest_group, f.commands, false);
    std::string ids, queues, types, bodies, headers;
    int held = 0;
    while (!stop) {
      ids = queues = types = bodies = headers = "{";
      held = 0;
      auto* m = rd_kafka_consumer_poll(consumer.get(), 100);
      while (m != nullptr) {
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          append_element(ids, header_of(m, "ce_id"));
          append_element(queues, queue);
          append_element(types, header_of(m, "ce_type"));
          append_element(bodies, {static_cast<const char*>(m->payload), m->len});
          append_element(headers, fmt::format(R"({{"source":"{}"}})", header_of(m, "ce_source")));
          ++held;
        }
        rd_kafka_message_destroy(m);
        if (held >= ingest_batch)
          break;
        m = rd_kafka_consumer_poll(consumer.get(), 0);
      }
      if (held == 0)
        continue;
      for (auto* a : {&ids, &queues, &types, &bodies, &headers})
        *a += '}';
      const char* params[5] = {ids.c_str(), queues.c_str(), types.c_str(), bodies.c_str(),
                               headers.c_str()};
      PQclear(db.run("ingest", 5, params));
      if (auto err = rd_kafka_commit(consumer.get(), nullptr, 0))
        throw std::runtime_error{
          fmt::format("kafka: baseline offsets not committed: {}", rd_kafka_err2str(err))};
      to_worker.notify();
    }
  });

  run.start([&](const std::atomic<bool>& stop) {
    raw::connection db{o.db};
    db.prepare("claim", raw::claim_sql(), 2);
    db.prepare("emit",
               fmt::format("INSERT INTO {} (id, destination, message_type, body) SELECT * FROM "
                           "unnest($1::uuid[], $2::text[], $3::text[], $4::text[])",
                           table("outgoing")),
               4);
    raw::uuid_source uuids;
    const auto limit = std::to_string(o.batch_size);
    const char* claim[2] = {queue.c_str(), limit.c_str()};
    const auto destination = "kafka://" + f.events;
    std::string ids, destinations, types, bodies;
    while (!stop) {
      auto seen = to_worker.seen();
      db.exec("BEGIN");
      auto* r = db.run("claim", 2, claim);
      auto rows = PQntuples(r);
      if (rows > 0) {
        ids = destinations = types = bodies = "{";
        for (int i = 0; i < rows; ++i) {
          append_element(ids, uuids.next());
          append_element(destinations, destination);
          append_element(types, event_type);
          append_element(bodies,
                         {PQgetvalue(r, i, 2), static_cast<std::size_t>(PQgetlength(r, i, 2))});
        }
        for (auto* a : {&ids, &destinations, &types, &bodies})
          *a += '}';
        const char* params[4] = {ids.c_str(), destinations.c_str(), types.c_str(), bodies.c_str()};
        try {
          PQclear(db.run("emit", 4, params));
        } catch (...) {
          PQclear(r);
          throw;
        }
      }
      PQclear(r);
      db.exec("COMMIT");
      if (rows > 0)
        to_relay.notify();
      else
        to_worker.wait(seen);
    }
  });

  run.start([&](const std::atomic<bool>& stop) {
    raw::connection db{o.db};
    db.prepare("take",
               fmt::format("DELETE FROM {0} WHERE id IN (SELECT id FROM {0} ORDER BY seq LIMIT $1 "
                           "FOR UPDATE SKIP LOCKED) RETURNING id, message_type, body, "
                           "to_char(created_at AT TIME ZONE 'UTC', "
                           "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                           table("outgoing")),
               1);
    deliveries reports;
    auto producer = make_producer(f.brokers, true, count_delivery, &reports);
    const auto limit = std::to_string(relay_batch);
    const char* take[1] = {limit.c_str()};
    while (!stop) {
      auto seen = to_relay.seen();
      db.exec("BEGIN");
      auto* r = db.run("take", 1, take);
      auto rows = PQntuples(r);
      reports = {};
      try {
        for (int i = 0; i < rows; ++i) {
          std::string_view id{PQgetvalue(r, i, 0), static_cast<std::size_t>(PQgetlength(r, i, 0))};
          produce(
            producer.get(), f.events, id,
            {PQgetvalue(r, i, 2), static_cast<std::size_t>(PQgetlength(r, i, 2))},
            event_headers(id, PQgetvalue(r, i, 1), "urn:bench:baseline", PQgetvalue(r, i, 3)));
        }
      } catch (...) {
        PQclear(r);
        throw;
      }
      PQclear(r);
      if (rows > 0)
        rd_kafka_flush(producer.get(), 30'000);
      if (reports.failed > 0 || reports.delivered < rows) {
        db.exec("ROLLBACK"); // the rows stay and are produced again
        std::this_thread::sleep_for(100ms);
        continue;
      }
      db.exec("COMMIT");
      if (rows == 0)
        to_relay.wait(seen);
    }
  });

  auto m = measure(o, f, [&] { return run.failed() ? "a baseline stage failed" : std::string{}; });
  run.stop();
  raw::drop_queue(o.db);
  return m;
}

} // namespace bench::kafka
