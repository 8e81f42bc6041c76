// The cluster case: two nodes in this process, each with its own actor system, talking over
// CAF's middleman on the loopback interface as two processes would. Node "front" serves none of
// the measured queues; node "back" serves them.
//   latency: one noop at a time sent on front (node::send) to the queue only back serves: from
//     the send's commit to back's handler start, front waking back over CAF. Its baseline is the
//     same-node `latency` path, in the same round.
//   queries: node::request of a query on a buffered queue, one after the other: on front (the
//     query and its reply travel over CAF) and on back (answered in memory on the same node).
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <soci/soci.h>

#include <depot/persistence/connection.hpp>

#include "bench.hpp"
#include "node.hpp"
#include "noop.hpp"

namespace bench {

namespace {

using namespace std::chrono_literals;

struct ask {
  std::int64_t n = 0;
};
DEPOT_MESSAGE(ask, "bench.ask", n)

struct told {
  std::int64_t n = 0;
};
DEPOT_MESSAGE(told, "bench.told", n)

struct unused {
  std::int64_t n = 0;
};
DEPOT_MESSAGE(unused, "bench.unused", n)

constexpr const char* schema = "bench_cluster";

/// How long the two nodes may take to connect, and the warm-up message to be handled.
constexpr auto setup_timeout = 30s;

/// `request` called `n` times one after the other: requests per second, and the percentiles of
/// a round trip.
measurement round_trips(std::int64_t n, const std::function<void()>& request) {
  measurement m;
  m.messages = n;
  latencies trips{n};
  const auto t0 = now_ns();
  for (std::int64_t i = 0; i < n; ++i) {
    trips.sent(i, now_ns());
    request();
    trips.started(i, now_ns());
  }
  m.seconds = static_cast<double>(now_ns() - t0) / 1e9;
  m.msgs_per_s = static_cast<double>(n) / m.seconds;
  std::tie(m.p50_ms, m.p99_ms) = trips.percentiles();
  m.ok = true;
  return m;
}

void wait_for(const std::string& what, const std::function<bool()>& done) {
  auto deadline = clock::now() + setup_timeout;
  while (!done()) {
    if (clock::now() > deadline)
      throw std::runtime_error{
        fmt::format("cluster: {} did not happen within {} s", what, setup_timeout.count())};
    std::this_thread::sleep_for(1ms);
  }
}

} // namespace

void run_cluster_round(const options& o, case_result& round) {
  reset_schema(o.db, schema);
  latencies lat{o.latency_messages};
  depot::routing app;
  app.handle<noop>([](const noop&, depot::context&) {});
  app.handle<ask>([](const ask& m, depot::context&) { return told{m.n}; })
    .on_queue("bench.queries")
    .buffered();
  app.handle<unused>([](const unused&, depot::context&) {}).on_queue("bench.front");
  app.use([&lat](const depot::envelope& e, depot::context&, const depot::next_step& next) {
    lat.started(seq_of(e.body), now_ns());
    next();
  });
  auto settings = [&](const char* queues) {
    auto s = node_settings_of(o, schema);
    s.heartbeat_interval = 100ms; // the nodes learn of each other from their heartbeats
    s.queues = queues;
    return s;
  };
  depot::node front{app, settings("bench.front")};
  depot::node back{app, settings("bench.noop,bench.queries")};
  front.start();
  back.start();
  {
    auto session = depot::persistence::open_session(o.db);
    wait_for("the connection of the two nodes", [&] {
      long long connected = 0;
      *session << fmt::format("SELECT count(*) FROM {}.nodes WHERE cardinality(peers) = 1", schema),
        soci::into(connected);
      return connected == 2;
    });
  }
  auto handled = [&back] { return static_cast<std::int64_t>(back.stats().handled); };
  front.send(noop{-1}); // warm-up: front's send connection, back's handling path
  wait_for("the warm-up message", [&] { return handled() >= 1; });
  round.ours = one_at_a_time(
    o, o.latency_messages, lat,
    [&front](std::int64_t seq) {
      front.send(noop{seq});
      return now_ns();
    },
    [&] { return handled() - 1; });
  round.envelopes_handled = static_cast<std::uint64_t>(handled());

  auto query = [](depot::node& on) {
    return [&on] {
      if (on.request<told>(ask{7}, 10s).n != 7)
        throw std::runtime_error{"cluster: a query got the wrong reply"};
    };
  };
  query(front)(); // warm-up of both paths
  query(back)();
  round.queries = round_trips(o.latency_messages, query(front));
  round.local_queries = round_trips(o.latency_messages, query(back));
  front.stop();
  back.stop();

  case_result same_node; // its envelope count is not reported
  round.baseline = run_latency(o, same_node);
}

} // namespace bench
