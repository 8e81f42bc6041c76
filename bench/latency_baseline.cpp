// The latency cases' baseline: the one-at-a-time cycle through libpq alone, no depot code. The
// producer stores one row and notifies a channel in one statement (one transaction: the
// notification goes out when the row commits); the consumer connection LISTENs, waits on its
// socket and, when notified, runs the claim (raw_queue.hpp's DELETE ... SKIP LOCKED). Latency is
// from the producer's commit to the claim's return.
#include <atomic>
#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <poll.h>

#include "bench.hpp"
#include "raw_queue.hpp"

namespace bench {

namespace {

using namespace std::chrono_literals;

/// Drains the notifications libpq has read; true when there was one.
bool notified(PGconn* conn) {
  bool any = false;
  while (PGnotify* n = PQnotifies(conn)) {
    PQfreemem(n);
    any = true;
  }
  return any;
}

/// Claims what each notification announces until `stop`; counts the rows in `claimed`.
void consume(raw::connection& consumer, const std::string& queue, int batch_size, latencies& lat,
             std::atomic<std::int64_t>& claimed, const std::atomic<bool>& stop) {
  auto* conn = consumer.native();
  const auto limit = std::to_string(batch_size);
  const char* params[2] = {queue.c_str(), limit.c_str()};
  while (!stop.load()) {
    if (!notified(conn)) {
      // A short wait keeps `stop` responsive.
      pollfd ready{PQsocket(conn), POLLIN, 0};
      if (poll(&ready, 1, 100) < 0 && errno != EINTR)
        throw std::system_error{errno, std::generic_category(), "baseline: poll"};
      if (PQconsumeInput(conn) != 1)
        throw std::runtime_error{fmt::format("baseline: {}", PQerrorMessage(conn))};
      if (!notified(conn))
        continue;
    }
    auto* r = consumer.run("claim", 2, params);
    auto t = now_ns();
    auto rows = PQntuples(r);
    for (int i = 0; i < rows; ++i)
      lat.started(seq_of({PQgetvalue(r, i, 2), static_cast<std::size_t>(PQgetlength(r, i, 2))}), t);
    PQclear(r);
    claimed.fetch_add(rows);
  }
}

} // namespace

measurement run_latency_baseline(const options& o) {
  const std::string queue = "bench.noop";
  const auto channel = fmt::format("{}_wake", raw::schema);
  {
    raw::connection admin{o.db};
    raw::create_queue(admin);
  }
  raw::connection producer{o.db};
  producer.prepare("send",
                   fmt::format("WITH stored AS (INSERT INTO {}.incoming (id, queue, message_type, "
                               "body) VALUES ($1, $2, $2, $3) RETURNING queue) SELECT "
                               "pg_notify('{}', queue) FROM stored",
                               raw::schema, channel),
                   3);
  raw::connection consumer{o.db};
  consumer.prepare("claim", raw::claim_sql(), 2);
  consumer.exec(fmt::format("LISTEN {}", channel));

  latencies lat{o.latency_messages};
  std::atomic<std::int64_t> claimed{0};
  std::atomic<bool> stop{false}, consumer_failed{false};
  std::exception_ptr consumer_error;
  std::thread consumer_thread{[&] {
    try {
      consume(consumer, queue, o.batch_size, lat, claimed, stop);
    } catch (...) {
      consumer_error = std::current_exception();
      consumer_failed = true;
    }
  }};
  raw::uuid_source ids;
  auto send = [&](std::int64_t seq) {
    auto id = ids.next();
    auto body = fmt::format("{{\"seq\":{}}}", seq);
    const char* values[3] = {id.c_str(), queue.c_str(), body.c_str()};
    PQclear(producer.run("send", 3, values));
    return now_ns();
  };
  auto handled = [&] {
    if (consumer_failed)
      throw std::runtime_error{"baseline: the consumer failed"};
    return claimed.load() - 1; // the warm-up
  };
  measurement m;
  try {
    // Warm-up: the statements' plans and the first notification.
    send(-1);
    auto deadline = clock::now() + 30s;
    while (handled() < 0) {
      if (clock::now() > deadline)
        throw std::runtime_error{"baseline: the warm-up row was not claimed in 30 s"};
      std::this_thread::sleep_for(100us);
    }
    m = one_at_a_time(o, o.latency_messages, lat, send, handled);
  } catch (...) {
    stop = true;
    consumer_thread.join();
    if (consumer_error)
      std::rethrow_exception(consumer_error);
    throw;
  }
  stop = true;
  consumer_thread.join();
  if (consumer_error)
    std::rethrow_exception(consumer_error);
  raw::drop_queue(o.db);
  return m;
}

} // namespace bench
