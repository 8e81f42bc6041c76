// The recovery case: how soon a node killed with SIGKILL handles again once restarted under the
// same node id. The parent stores a backlog of noops with no node running (send_durably, the
// CLI's `send` path), starts a child node (role "node", a handler that sleeps 1 ms per message so
// that the backlog lasts), lets it handle for a moment, kills it in the middle of its batches
// (each takes 100 ms: the claims of its open transactions roll back as the server notices the
// closed connections) and at once spawns a new child with the same node id. recovery_s runs from
// that spawn to the new child's first handler start, which the child reports in steady_clock
// nanoseconds (CLOCK_MONOTONIC: one clock for every process on Linux). It covers the process
// start, the node's start (connect, schema check, registration, which takes over the dead
// incarnation's number) and the first claim.
// Also: the node role.
#include <atomic>
#include <iostream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include <depot/persistence/schema.hpp>
#include <depot/transports/local.hpp>

#include "bench.hpp"
#include "child_process.hpp"
#include "noop.hpp"

namespace bench {

namespace {

using namespace std::chrono_literals;

constexpr int node_id = 7;
/// What the node role's handler takes per message: with the node's batches and workers, the
/// backlog lasts far longer than the case.
constexpr auto handling_time = 1ms;
/// How long the first node handles before it is killed: long enough to be in the middle of
/// batches, not to drain the backlog.
constexpr auto first_run = 200ms;
/// How long a node may take to start and handle its first envelope.
constexpr auto start_timeout = 60s;

/// Stores `o.recovery_messages` noops in `schema`, in send transactions of `o.send_batch`.
void store_backlog(const options& o, const std::string& db, const std::string& schema) {
  depot::persistence::connection store{{db, schema}};
  depot::persistence::apply_schema(store);
  depot::routing app; // routes bench.noop to its queue; the handler never runs here
  app.handle<noop>([](const noop&, depot::context&) {});
  std::vector<std::string> bodies;
  for (std::int64_t first = 0; first < o.recovery_messages; first += o.send_batch) {
    bodies.clear();
    for (auto seq = first; seq < std::min(o.recovery_messages, first + o.send_batch); ++seq)
      bodies.push_back(depot::to_json(noop{seq}));
    depot::send_durably(store, app, "bench", 0, depot::type_name_of<noop>(), bodies, {}, 0,
                        depot::dispatch::send);
  }
}

/// When the node in `child` started its first handler (steady_clock nanoseconds).
std::int64_t first_handled(child_process& child, const char* which) {
  auto line = child.read_line(start_timeout);
  // "handled NANOSECONDS"
  constexpr std::string_view prefix = "handled ";
  if (!line || !line->starts_with(prefix))
    throw std::runtime_error{fmt::format(
      "the {} node did not handle within {} s{} (its errors are above)", which,
      start_timeout.count(), line ? fmt::format(": it said '{}'", *line) : std::string{})};
  return std::stoll(line->substr(prefix.size()));
}

} // namespace

measurement run_recovery(const options& o) {
  const std::string schema = "bench_recovery";
  const auto db = with_search_path(o.db, schema);
  reset_schema(o.db, schema);
  store_backlog(o, db, schema);
  const std::vector<std::string> node_args{"--role=node",
                                           "--db=" + db,
                                           "--schema=" + schema,
                                           fmt::format("--node-id={}", node_id),
                                           fmt::format("--batch-size={}", o.batch_size),
                                           fmt::format("--concurrency={}", o.concurrency)};
  {
    child_process first{node_args};
    first_handled(first, "first");
    std::this_thread::sleep_for(first_run);
    first.kill();
  }
  long long left = 0;
  {
    auto session = depot::persistence::open_session(o.db);
    *session << fmt::format("SELECT count(*) FROM {}.incoming", schema), soci::into(left);
  }
  const auto restarted = now_ns();
  child_process second{node_args};
  const auto handling = first_handled(second, "restarted");
  measurement m;
  m.messages = o.recovery_messages;
  m.recovery_s = static_cast<double>(handling - restarted) / 1e9;
  m.ok = true;
  m.note = fmt::format(
    "no baseline; the killed node had handled {} envelopes, up to {} were in its open batches",
    o.recovery_messages - left, o.batch_size * o.concurrency);
  second.close_input();
  if (second.wait(start_timeout) != 0) {
    m.ok = false;
    m.note = "the restarted node did not stop cleanly";
  }
  return m;
}

int run_recovery_node(const role_options& r) {
  std::atomic<bool> first{true};
  depot::routing app;
  app.handle<noop>([&first](const noop&, depot::context&) {
    if (first.exchange(false)) {
      fmt::print("handled {}\n", now_ns());
      std::fflush(stdout);
    }
    std::this_thread::sleep_for(handling_time);
  });
  depot::node_settings s;
  s.db = r.db;
  s.schema = r.schema;
  s.service = "bench";
  s.node_id = r.node_id;
  s.batch_size = r.batch_size;
  s.concurrency = r.concurrency;
  depot::node n{app, s};
  n.start();
  // Until the parent closes stdin, or kills this process.
  for (std::string line; std::getline(std::cin, line);) {}
  n.stop();
  return 0;
}

} // namespace bench
