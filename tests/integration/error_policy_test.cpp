// Declared error policies carried out by a node against Postgres: each action, the persisted
// attempts, pauses every node honours, and depot.fault published with the dead letter. Delays
// are tens of milliseconds: nothing sleeps through a real backoff.
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "depot/actors/node.hpp"
#include "depot/runtime/routing.hpp"
#include "fixture.hpp"

using namespace depot_it;
using namespace std::chrono_literals;

namespace {

struct job {
  std::string tag;
  int failures = 0; ///< attempts that throw before one succeeds
};
DEPOT_MESSAGE(job, "it.job", tag, failures)

struct ping {
  std::string tag;
};
DEPOT_MESSAGE(ping, "it.breaker-ping", tag)

struct ledger_unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Records every attempt, and throws ledger_unavailable for the first `failures` of them.
void flaky_handler(const job& m, depot::context& ctx, const std::string& effects) {
  if (ctx.incoming().attempts < m.failures)
    throw ledger_unavailable{
      fmt::format("{} unavailable (attempt {})", m.tag, ctx.incoming().attempts + 1)};
  record_effect(ctx, effects, fmt::format("{}@{}", m.tag, ctx.incoming().attempts));
}

/// Registers flaky_handler for jobs, recording into `effects`; returns the handler's error
/// policy for ledger_unavailable.
depot::error_policy& handle_flaky_jobs(depot::routing& app, const std::string& effects) {
  return app
    .handle<job>([effects](const job& m, depot::context& ctx) { flaky_handler(m, ctx, effects); })
    .on_exception<ledger_unavailable>();
}

} // namespace

TEST_CASE("retry_times reruns the handler at once, in the same transaction") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  handle_flaky_jobs(app, s.table("effects")).retry_times(2);
  auto config = s.node_config();
  config.failures.retry_delay = 10min; // the default policy would wait: the inline one does not
  config.failures.max_retry_delay = 10min;
  depot::node node{app, config};
  node.start();

  node.send(job{"a", 2});
  REQUIRE(wait_until([&] { return node.stats().handled == 1; }));
  CHECK(s.text("SELECT string_agg(tag, ',') FROM effects") == "a@2");
  CHECK(node.stats().retried == 2);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);

  // A third failure is past the chain: a dead letter with every attempt counted.
  node.send(job{"b", 3});
  REQUIRE(wait_until([&] { return node.stats().dead_lettered == 1; }));
  CHECK(s.number("SELECT attempts FROM dead_letters") == 3);
  CHECK(s.text("SELECT exception_type FROM dead_letters") ==
        "(anonymous namespace)::ledger_unavailable");
}

TEST_CASE("retry_with_cooldown schedules each retry, persisted with its attempts") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  app.on_exception<ledger_unavailable>().retry_with_cooldown(300ms, 20ms).then_dead_letter();
  app.handle<job>(
    [e = s.table("effects")](const job& m, depot::context& ctx) { flaky_handler(m, ctx, e); });
  depot::node node{app, s.node_config()};
  node.start();

  node.send(job{"a", 2});
  // After the first failure the envelope waits, scheduled, with one attempt counted.
  REQUIRE(wait_until([&] {
    return s.number(
             "SELECT count(*) FROM incoming WHERE status = 'scheduled' AND attempts = 1 "
             "AND execution_time > now() + interval '100 ms'") == 1;
  }));
  REQUIRE(wait_until([&] { return node.stats().handled == 1; }));
  CHECK(s.text("SELECT string_agg(tag, ',') FROM effects") == "a@2");
  CHECK(node.stats().retried == 2);
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
}

TEST_CASE("requeue puts the envelope after what waits in its queue") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  handle_flaky_jobs(app, s.table("effects")).requeue().then_dead_letter();
  auto config = s.node_config();
  config.concurrency = 1;
  depot::node node{app, config};
  node.start();

  node.send_all(std::vector<job>{{"first", 1}, {"second", 0}, {"third", 0}});
  REQUIRE(wait_until([&] { return node.stats().handled == 3; }));
  CHECK(s.text("SELECT string_agg(tag, ',' ORDER BY handled_at, tag) FROM effects") ==
        "second@0,third@0,first@1");
}

TEST_CASE("discard drops the envelope, counted and with no dead letter") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  app.on_exception<ledger_unavailable>().discard();
  app.handle<job>(
    [e = s.table("effects")](const job& m, depot::context& ctx) { flaky_handler(m, ctx, e); });
  depot::node node{app, s.node_config()};
  node.start();

  node.send(job{"a", 1});
  REQUIRE(wait_until([&] { return node.stats().discarded == 1; }));
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
  CHECK(s.number("SELECT count(*) FROM effects") == 0);
}

TEST_CASE("pause_queue stops every claim of the queue until the pause ends, then resumes") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  handle_flaky_jobs(app, s.table("effects")).pause_queue(700ms).then_dead_letter();
  auto config = s.node_config();
  config.concurrency = 1;
  depot::node node{app, config};
  node.start();

  node.send(job{"a", 1});
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM queue_states") == 1; }));
  auto paused_at = s.text("SELECT changed_at FROM queue_states");
  CHECK(s.text("SELECT reason FROM queue_states") ==
        "(anonymous namespace)::ledger_unavailable: a unavailable (attempt 1)");
  test_store store{s.store_config()};
  auto paused = store.admin.paused_queues();
  REQUIRE(paused.size() == 1);
  CHECK(paused[0].queue == "it.job");
  // Sent during the pause: it waits too.
  node.send(job{"b", 0});
  REQUIRE(wait_until([&] { return node.stats().handled == 2; }));
  CHECK(s.text("SELECT string_agg(tag, ',' ORDER BY handled_at) FROM effects") == "a@1,b@0");
  CHECK(s.number(fmt::format("SELECT count(*) FROM effects WHERE handled_at < '{}'::timestamptz "
                             "+ interval '690 ms'",
                             paused_at)) == 0);
  CHECK(store.admin.paused_queues().empty());
}

TEST_CASE("a dead letter and its depot.fault commit together") {
  test_schema s;
  std::mutex m;
  std::vector<depot::fault> faults;
  std::string fault_traceparent;
  depot::routing app;
  app.publish_faults<job>();
  app.on_exception<ledger_unavailable>().retry_times(1).then_dead_letter();
  app.handle<job>(
    [](const job& j, depot::context&) { throw ledger_unavailable{j.tag + " unavailable"}; });
  app.handle<depot::fault>([&](const depot::fault& f, depot::context& ctx) {
    std::lock_guard guard{m};
    faults.push_back(f);
    fault_traceparent = ctx.incoming().header_value(depot::header::traceparent);
  });
  depot::node node{app, s.node_config()};
  node.start();

  const std::string trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  node.send(job{"a", 0}, {.headers = {{"correlation-id", "corr-7"}, {"traceparent", trace}}});
  REQUIRE(wait_until([&] {
    std::lock_guard guard{m};
    return !faults.empty();
  }));
  std::lock_guard guard{m};
  REQUIRE(faults.size() == 1);
  const auto& f = faults.front();
  CHECK(f.envelope_id == s.text("SELECT id FROM dead_letters"));
  CHECK(f.message_type == "it.job");
  CHECK(f.queue == "it.job");
  CHECK(f.exception_type == "(anonymous namespace)::ledger_unavailable");
  CHECK(f.exception_message == "a unavailable");
  CHECK(f.attempts == 2);
  CHECK(f.correlation_id == "corr-7");
  CHECK(f.action == "dead-letter");
  CHECK(fault_traceparent == trace); // the fault joins the trace of the failed envelope
}

TEST_CASE("a circuit breaker stops the queue's claims while open, then a probe closes it") {
  test_schema s;
  create_effects_table(s);
  std::atomic<bool> down{true};
  depot::routing app;
  app.handle<job>([&, e = s.table("effects")](const job& m, depot::context& ctx) {
    if (down)
      throw ledger_unavailable{"ledger down"};
    record_effect(ctx, e, m.tag);
  });
  app.queue("it.job")
    .circuit_breaker({.minimum_handlings = 3, .failure_ratio = 0.5, .window = 10s, .pause = 600ms})
    .on_exception<ledger_unavailable>()
    .retry_with_cooldown(100ms, 100ms, 100ms, 100ms, 100ms, 100ms)
    .then_dead_letter();
  auto config = s.node_config();
  config.concurrency = 1;
  depot::node node{app, config};
  node.start();

  node.send_all(std::vector<job>{{"a", 0}, {"b", 0}, {"c", 0}});
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM queue_breakers") == 1; }));
  CHECK(s.text("SELECT state FROM queue_breakers") == "open");
  CHECK(s.text("SELECT reason FROM queue_breakers") == "3 of 3 handlings failed within 10s");
  test_store store{s.store_config()};
  auto open = store.admin.open_breakers();
  REQUIRE(open.size() == 1);
  CHECK(open[0].queue == "it.job");
  // While open, nothing is claimed: a new envelope waits although it is ready.
  node.send(job{"d", 0});
  std::this_thread::sleep_for(300ms);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE body LIKE '%\"d\"%'") == 1);
  CHECK(s.number("SELECT count(*) FROM effects") == 0);

  down = false; // the ledger is back: the probe succeeds and the breaker closes
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 4; }));
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM queue_breakers") == 0; }));
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
}

TEST_CASE("while its breaker is open a queue runs its fallback instead of the handler") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  app.handle<job>([](const job&, depot::context&) -> void { throw ledger_unavailable{"down"}; });
  app.queue("it.job")
    .circuit_breaker({.minimum_handlings = 2, .failure_ratio = 1.0, .window = 10s, .pause = 1h})
    .fallback<job>([e = s.table("effects")](const job& m, depot::context& ctx) {
      record_effect(ctx, e, "fallback " + m.tag);
    })
    .on_exception<ledger_unavailable>()
    .retry_with_cooldown(50ms, 50ms, 50ms)
    .then_dead_letter();
  auto config = s.node_config();
  config.concurrency = 1;
  depot::node node{app, config};
  node.start();

  node.send_all(std::vector<job>{{"a", 0}, {"b", 0}});
  // Both fail once and open the breaker; their retries and a new job run the fallback.
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM queue_breakers") == 1; }));
  node.send(job{"c", 0});
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 3; }));
  CHECK(s.text("SELECT string_agg(tag, ',' ORDER BY tag) FROM effects") ==
        "fallback a,fallback b,fallback c");
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
}

TEST_CASE("a handler's breaker defers its envelopes while open; the queue's other types go on") {
  test_schema s;
  create_effects_table(s);
  std::atomic<bool> down{true};
  depot::routing app;
  const auto effects = s.table("effects");
  app
    .handle<job>([&, effects](const job& m, depot::context& ctx) {
      if (down)
        throw ledger_unavailable{"ledger down"};
      record_effect(ctx, effects, m.tag);
    })
    .on_queue("it.mixed")
    .circuit_breaker({.minimum_handlings = 3, .failure_ratio = 1.0, .window = 10s, .pause = 2s})
    .on_exception<ledger_unavailable>()
    .retry_with_cooldown(20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms)
    .then_dead_letter();
  app
    .handle<ping>([effects](const ping& p, depot::context& ctx) {
      record_effect(ctx, effects, "ping " + p.tag);
    })
    .on_queue("it.mixed");
  auto config = s.node_config();
  config.concurrency = 1;
  depot::node node{app, config};
  node.start();

  node.send_all(std::vector<job>{{"a", 0}, {"b", 0}, {"c", 0}});
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM queue_breakers") == 1; }));
  CHECK(s.text("SELECT queue || ' / ' || message_type || ': ' || state FROM queue_breakers") ==
        "it.mixed / it.job: open");
  test_store store{s.store_config()};
  auto open = store.admin.open_breakers();
  REQUIRE(open.size() == 1);
  CHECK(open[0].message_type == "it.job");
  // The queue goes on claiming: another type is handled at once, and the jobs' retries wait,
  // deferred, without counting attempts.
  node.send(ping{"p"});
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }));
  CHECK(s.text("SELECT tag FROM effects") == "ping p");
  CHECK(wait_until([&] { return node.stats().deferred >= 3; }));
  CHECK(node.stats().retried == 3);
  CHECK(s.number("SELECT max(attempts) FROM incoming WHERE message_type = 'it.job'") == 1);

  down = false; // the probe succeeds after the pause and the breaker closes
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 4; }));
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM queue_breakers") == 0; }));
  CHECK(s.text("SELECT string_agg(tag, ',' ORDER BY tag) FROM effects") == "a,b,c,ping p");
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
}
