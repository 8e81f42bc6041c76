// The baseline: the raw durable-queue cycle through libpq, no depot code, on the same database.
// A table shaped like depot's incoming in its own schema; one producer thread COPYs batches
// (one transaction each); one consumer thread runs
//   DELETE ... WHERE id IN (SELECT id ... ORDER BY priority DESC, received_at LIMIT n
//                           FOR UPDATE SKIP LOCKED) RETURNING ...
// one transaction per batch, at the same time. The producer wakes the consumer in memory after
// each commit (as a node wakes its own queue); the consumer sleeps only when it found nothing.
#include <condition_variable>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "bench.hpp"

namespace bench {

namespace {

using namespace std::chrono_literals;

constexpr const char* schema = "bench_baseline";

struct connection {
  explicit connection(const std::string& db) : conn(PQconnectdb(db.c_str())) {
    if (PQstatus(conn) != CONNECTION_OK)
      throw std::runtime_error{fmt::format("baseline: cannot connect: {}", PQerrorMessage(conn))};
    exec("SET client_min_messages = warning");
  }
  ~connection() { PQfinish(conn); }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void exec(const std::string& sql) {
    auto* r = PQexec(conn, sql.c_str());
    auto st = PQresultStatus(r);
    std::string error = PQresultErrorMessage(r);
    PQclear(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
      throw std::runtime_error{fmt::format("baseline: {}: {}", sql, error)};
  }

  void prepare(const char* name, const std::string& sql, int params) {
    auto* r = PQprepare(conn, name, sql.c_str(), params, nullptr);
    auto ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    std::string error = PQresultErrorMessage(r);
    PQclear(r);
    if (!ok)
      throw std::runtime_error{fmt::format("baseline: prepare {}: {}", name, error)};
  }

  PGconn* conn;
};

/// Time-ordered uuid text (48-bit milliseconds, then random), like depot's v7 ids.
class uuid_source {
public:
  std::string next() {
    auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
    auto hi = (ms << 16) | 0x7000 | (rng_() & 0x0fff);
    auto lo = (rng_() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
    return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                       hi & 0xffff, lo >> 48, lo & 0xffffffffffffULL);
  }

private:
  std::mt19937_64 rng_{std::random_device{}()};
};

/// COPY text format: escape backslash, tab, newline and carriage return.
void append_copy_field(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
}

std::string body_of(const std::string& name, std::int64_t seq, int accounts) {
  if (name == "noop")
    return fmt::format("{{\"seq\":{}}}", seq);
  auto a = seq % accounts + 1;
  return fmt::format("{{\"account_id\":\"acct-{}\",\"amount\":{},\"seq\":{}}}", a,
                     10 + (a * 7) % 41, seq);
}

/// Wakes the consumer after each producer commit.
struct wake {
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t commits = 0;
  bool done = false;
};

} // namespace

measurement run_baseline(const options& o, const std::string& name) {
  const std::string queue = name == "noop" ? "bench.noop" : "bank.debit-account";
  {
    connection admin{o.db};
    admin.exec(fmt::format("DROP SCHEMA IF EXISTS {} CASCADE", schema));
    admin.exec(fmt::format("CREATE SCHEMA {}", schema));
    admin.exec(fmt::format(
      "CREATE TABLE {}.incoming (id uuid PRIMARY KEY, queue text NOT NULL, message_type text "
      "NOT NULL, body text NOT NULL, headers jsonb NOT NULL DEFAULT '{{}}', status text NOT NULL "
      "DEFAULT 'incoming', owner integer NOT NULL DEFAULT 0, execution_time timestamptz NOT "
      "NULL DEFAULT now(), deliver_by timestamptz, attempts integer NOT NULL DEFAULT 0, "
      "priority integer NOT NULL DEFAULT 0, received_at timestamptz NOT NULL DEFAULT now(), "
      "tenant text)",
      schema));
    admin.exec(
      fmt::format("CREATE INDEX incoming_ready ON {}.incoming (queue, priority DESC, "
                  "received_at) WHERE status = 'incoming' AND owner = 0",
                  schema));
  }
  connection producer{o.db};
  connection consumer{o.db};
  consumer.prepare("claim",
                   fmt::format("DELETE FROM {0}.incoming WHERE id IN (SELECT id FROM {0}.incoming "
                               "WHERE queue = $1 AND status = 'incoming' AND owner = 0 AND "
                               "execution_time <= now() ORDER BY priority DESC, received_at "
                               "LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, message_type, "
                               "body, headers, attempts, priority, received_at",
                               schema),
                   2);
  const auto copy_sql =
    fmt::format("COPY {}.incoming (id, queue, message_type, body) FROM STDIN", schema);

  latencies lat{o.messages};
  wake w;
  std::exception_ptr producer_error;
  measurement m;
  m.messages = o.messages;
  settle(o.db);
  const auto before = resources::sample(o.db);
  const auto t0 = now_ns();

  std::thread produce{[&] {
    try {
      uuid_source ids;
      std::string data;
      for (std::int64_t first = 0; first < o.messages; first += o.send_batch) {
        auto last = std::min(o.messages, first + o.send_batch);
        data.clear();
        for (auto seq = first; seq < last; ++seq) {
          data += ids.next();
          data += '\t';
          data += queue;
          data += '\t';
          data += queue;
          data += '\t';
          append_copy_field(data, body_of(name, seq, o.accounts));
          data += '\n';
        }
        auto* r = PQexec(producer.conn, copy_sql.c_str());
        auto st = PQresultStatus(r);
        PQclear(r);
        if (st != PGRES_COPY_IN)
          throw std::runtime_error{fmt::format("baseline COPY: {}", PQerrorMessage(producer.conn))};
        if (PQputCopyData(producer.conn, data.data(), static_cast<int>(data.size())) != 1 ||
            PQputCopyEnd(producer.conn, nullptr) != 1)
          throw std::runtime_error{fmt::format("baseline COPY: {}", PQerrorMessage(producer.conn))};
        r = PQgetResult(producer.conn);
        st = PQresultStatus(r);
        std::string error = PQresultErrorMessage(r);
        PQclear(r);
        while ((r = PQgetResult(producer.conn)) != nullptr)
          PQclear(r);
        if (st != PGRES_COMMAND_OK)
          throw std::runtime_error{fmt::format("baseline COPY: {}", error)};
        auto t = now_ns();
        for (auto seq = first; seq < last; ++seq)
          lat.sent(seq, t);
        {
          std::lock_guard guard{w.m};
          ++w.commits;
        }
        w.cv.notify_one();
      }
    } catch (...) {
      producer_error = std::current_exception();
    }
    std::lock_guard guard{w.m};
    w.done = true;
    w.cv.notify_one();
  }};

  // The consumer runs on this thread.
  const auto limit = std::to_string(o.batch_size);
  const char* params[2] = {queue.c_str(), limit.c_str()};
  std::int64_t consumed = 0;
  std::int64_t t_end = 0;
  std::uint64_t seen = 0;
  auto deadline = clock::now() + std::chrono::seconds{o.timeout_s};
  std::string error;
  while (consumed < o.messages && clock::now() < deadline) {
    {
      std::lock_guard guard{w.m};
      seen = w.commits;
    }
    auto* r = PQexecPrepared(consumer.conn, "claim", 2, params, nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      error = PQresultErrorMessage(r);
      PQclear(r);
      break;
    }
    auto t = now_ns();
    auto rows = PQntuples(r);
    for (int i = 0; i < rows; ++i) {
      auto body =
        std::string_view{PQgetvalue(r, i, 2), static_cast<std::size_t>(PQgetlength(r, i, 2))};
      lat.started(seq_of(body), t);
    }
    PQclear(r);
    consumed += rows;
    if (consumed >= o.messages) {
      t_end = t;
      break;
    }
    if (rows == 0) {
      std::unique_lock lock{w.m};
      if (w.done && w.commits == seen)
        break; // nothing more will come
      w.cv.wait_for(lock, 100ms, [&] { return w.commits != seen || w.done; });
    }
  }
  if (t_end != 0)
    m.used = resources::sample(o.db) - before;
  produce.join();
  {
    connection admin{o.db};
    admin.exec(fmt::format("DROP SCHEMA IF EXISTS {} CASCADE", schema));
  }
  if (producer_error)
    std::rethrow_exception(producer_error);
  if (!error.empty())
    throw std::runtime_error{fmt::format("baseline claim: {}", error)};
  if (t_end == 0) {
    m.note = fmt::format("timed out: {} of {} consumed", consumed, o.messages);
    return m;
  }
  m.ok = true;
  m.seconds = static_cast<double>(t_end - t0) / 1e9;
  m.msgs_per_s = static_cast<double>(o.messages) / m.seconds;
  std::tie(m.p50_ms, m.p99_ms) = lat.percentiles();
  return m;
}

} // namespace bench
