// The latency cases: one message at a time through an idle node, from the commit of its send to
// the start of its handler (a middleware takes the time), then 5 ms of pause before the next.
//   latency: this process sends (node::send); the node wakes its own queue in memory.
//   latency_remote: a child process sends (role remote-sender: send_durably on its own
//     connection, the path of the CLI's `send`); the node hears of it through LISTEN/NOTIFY. The
//     child takes the commit time from steady_clock, which is CLOCK_MONOTONIC, one clock for
//     every process on Linux, so times compare across the two processes.
// Also: one_at_a_time, the cycle the latency baseline shares, and the remote-sender role.
#include <iostream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include <depot/transports/local.hpp>

#include "bench.hpp"
#include "child_process.hpp"
#include "node.hpp"
#include "noop.hpp"

namespace bench {

namespace {

using namespace std::chrono_literals;

/// Between two messages, so that each finds the node idle again (workers back to waiting for
/// work), yet keeps the case short.
constexpr auto pause = 5ms;

/// How long the remote sender may take to answer, and the node to handle the warm-up message,
/// before the case fails.
constexpr auto answer_timeout = 30s;

/// A started node on a fresh schema with a noop handler; handler starts of noops go to `lat`.
class noop_node {
public:
  noop_node(const options& o, const std::string& schema, latencies& lat)
    : db_(with_search_path(o.db, schema)) {
    reset_schema(o.db, schema);
    app_.handle<noop>([](const noop&, depot::context&) {});
    app_.use([&lat](const depot::envelope& e, depot::context&, const depot::next_step& next) {
      auto t = now_ns();
      lat.started(seq_of(e.body), t);
      next();
    });
    node_ = std::make_unique<depot::node>(app_, node_settings_of(o, schema));
    node_->start();
  }

  depot::node& node() { return *node_; }
  /// The node's connection string (search_path set to the case's schema).
  [[nodiscard]] const std::string& db() const { return db_; }
  /// Envelopes handled and committed since the start.
  [[nodiscard]] std::int64_t handled() const {
    return static_cast<std::int64_t>(node_->stats().handled);
  }

  /// Waits until `count` envelopes were handled; throws after answer_timeout.
  void wait_handled(std::int64_t count) const {
    auto deadline = clock::now() + answer_timeout;
    while (handled() < count) {
      if (clock::now() > deadline)
        throw std::runtime_error{
          fmt::format("the warm-up message was not handled in {} s", answer_timeout.count())};
      std::this_thread::sleep_for(100us);
    }
  }

private:
  std::string db_;
  depot::routing app_;
  std::unique_ptr<depot::node> node_; // after app_, which it reads
};

/// What the remote sender answers for message `seq`: its commit time.
std::int64_t commit_time_of(child_process& sender, std::int64_t seq) {
  sender.write_line(std::to_string(seq));
  auto line = sender.read_line(answer_timeout);
  if (!line)
    throw std::runtime_error{
      fmt::format("the remote sender did not answer message {} within {} s (its errors are above)",
                  seq, answer_timeout.count())};
  // "SEQ NANOSECONDS"
  auto space = line->find(' ');
  if (space == std::string::npos || std::stoll(line->substr(0, space)) != seq)
    throw std::runtime_error{fmt::format("the remote sender answered '{}' to {}", *line, seq)};
  return std::stoll(line->substr(space + 1));
}

} // namespace

measurement one_at_a_time(const options& o, std::int64_t n, latencies& lat,
                          const std::function<std::int64_t(std::int64_t)>& send,
                          const std::function<std::int64_t()>& handled) {
  measurement m;
  m.messages = n;
  settle(o.db);
  const auto before = resources::sample(o.db);
  const auto t0 = now_ns();
  const auto deadline = clock::now() + std::chrono::seconds{o.timeout_s};
  for (std::int64_t seq = 0; seq < n; ++seq) {
    lat.sent(seq, send(seq));
    while (handled() <= seq) {
      if (clock::now() > deadline) {
        m.note = fmt::format("timed out: {} of {} messages handled", handled(), n);
        return m;
      }
      std::this_thread::sleep_for(100us);
    }
    if (seq + 1 < n)
      std::this_thread::sleep_for(pause);
  }
  const auto t_end = now_ns();
  m.used = resources::sample(o.db) - before;
  m.ok = true;
  m.seconds = static_cast<double>(t_end - t0) / 1e9;
  m.msgs_per_s = static_cast<double>(n) / m.seconds;
  std::tie(m.p50_ms, m.p99_ms) = lat.percentiles();
  return m;
}

measurement run_latency(const options& o, case_result& result) {
  latencies lat{o.latency_messages};
  noop_node n{o, "bench_latency", lat};
  // Warm-up: opens the send connection and the handling path.
  n.node().send(noop{-1});
  n.wait_handled(1);
  auto m = one_at_a_time(
    o, o.latency_messages, lat,
    [&n](std::int64_t seq) {
      n.node().send(noop{seq});
      return now_ns();
    },
    [&n] { return n.handled() - 1; });
  result.envelopes_handled = static_cast<std::uint64_t>(n.handled());
  return m;
}

measurement run_remote_latency(const options& o, case_result& result) {
  const std::string schema = "bench_latency_remote";
  latencies lat{o.latency_messages};
  noop_node n{o, schema, lat};
  child_process sender{{"--role=remote-sender", "--db=" + n.db(), "--schema=" + schema}};
  commit_time_of(sender, -1); // warm-up: the child's connection, the node's wake-up by NOTIFY
  n.wait_handled(1);
  auto m = one_at_a_time(
    o, o.latency_messages, lat, [&sender](std::int64_t seq) { return commit_time_of(sender, seq); },
    [&n] { return n.handled() - 1; });
  result.envelopes_handled = static_cast<std::uint64_t>(n.handled());
  sender.close_input();
  if (sender.wait(answer_timeout) != 0 && m.note.empty())
    m.note = "the remote sender did not exit cleanly";
  return m;
}

int run_remote_sender(const role_options& r) {
  // Routes bench.noop to its queue; the handler never runs in this process.
  depot::routing app;
  app.handle<noop>([](const noop&, depot::context&) {});
  depot::persistence::connection store{{r.db, r.schema}};
  for (std::string line; std::getline(std::cin, line);) {
    auto seq = std::stoll(line);
    depot::send_durably(store, app, "bench", 0, depot::type_name_of<noop>(),
                        {depot::to_json(noop{seq})}, {}, 0, depot::dispatch::send);
    fmt::print("{} {}\n", seq, now_ns());
    std::fflush(stdout);
  }
  return 0;
}

} // namespace bench
