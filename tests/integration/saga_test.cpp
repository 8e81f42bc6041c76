// Sagas run by nodes against Postgres: steps that commit with their state, idempotent starts,
// not-found messages, compensation in reverse order (on request, on a failed step, on cancel,
// on timeout), stuck compensations resumed by a replay, timeouts ended by the step they guard,
// concurrent messages of one saga on two workers and two nodes, and retention. Timeouts are
// tens of milliseconds: nothing sleeps through a real delay.
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>

#include <fmt/format.h>
#include <soci/soci.h>

#include "depot/actors/node.hpp"
#include "depot/persistence/saga_store.hpp"
#include "depot/runtime/saga.hpp"
#include "fixture.hpp"

using namespace depot_it;
using namespace std::chrono_literals;

namespace {

struct tally {
  std::string id;
  std::int64_t count = 0;
  std::vector<std::string> seen;
};
DEPOT_MESSAGE(tally, "it.tally", id, count, seen)

struct open_tally {
  std::string id;
  std::string compensation; ///< "", "own" (run by the saga) or "elsewhere" (another queue)
};
DEPOT_MESSAGE(open_tally, "it.open-tally", id, compensation)
DEPOT_MESSAGE_KEY(open_tally, id)

struct add_one {
  std::string id;
  std::string tag;
  std::string compensation{};
  bool fail = false;     ///< the step throws
  bool finish = false;   ///< the step completes the saga
  bool give_up = false;  ///< the step asks for compensation
  std::int64_t wait = 0; ///< ms: the step requests a timeout guarded by add_one
};
DEPOT_MESSAGE(add_one, "it.add-one", id, tag, compensation, fail, finish, give_up, wait)
DEPOT_MESSAGE_KEY(add_one, id)

/// A compensation the saga runs itself.
struct undo {
  std::string id;
  std::string what;
};
DEPOT_MESSAGE(undo, "it.undo", id, what)
DEPOT_MESSAGE_KEY(undo, id)

/// A compensation handled on another queue.
struct undo_elsewhere {
  std::string id;
  std::string what;
};
DEPOT_MESSAGE(undo_elsewhere, "it.undo-elsewhere", id, what)
DEPOT_MESSAGE_KEY(undo_elsewhere, id)

struct waited_too_long {
  std::string id;
};
DEPOT_MESSAGE(waited_too_long, "it.waited-too-long", id)
DEPOT_MESSAGE_KEY(waited_too_long, id)

struct step_failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Whether undo of the saga throws (a compensation that fails until the flag is cleared).
std::atomic<bool> undo_fails{false};

void record_compensation(depot::saga_context& ctx, const std::string& id, const std::string& what,
                         const std::string& how) {
  if (how == "own")
    ctx.compensate_with(undo{id, what});
  else if (how == "elsewhere")
    ctx.compensate_with(undo_elsewhere{id, what});
}

/// The saga "tally": every step adds to its count and records what it saw; compensations are
/// recorded in `effects` as "undo:<what>" in the order they ran.
depot::saga_builder<tally> tally_saga(depot::routing& app, const std::string& effects) {
  app.handle<undo_elsewhere>([effects](const undo_elsewhere& m, depot::context& ctx) {
    record_effect(ctx, effects, "undo:" + m.what);
  });
  auto saga = app.saga<tally>("tally");
  saga
    .starts<open_tally>([](const open_tally& m, tally& s, depot::saga_context& ctx) {
      s.id = m.id;
      s.seen.push_back("open");
      record_compensation(ctx, m.id, "open", m.compensation);
    })
    .handles<add_one>([](const add_one& m, tally& s, depot::saga_context& ctx) {
      if (m.fail)
        throw step_failed{"step " + m.tag + " failed"};
      ++s.count;
      s.seen.push_back(m.tag);
      record_compensation(ctx, m.id, m.tag, m.compensation);
      if (m.wait > 0)
        ctx.request_timeout<add_one>(waited_too_long{m.id}, std::chrono::milliseconds{m.wait});
      if (m.give_up)
        ctx.compensate("gave up at " + m.tag);
      if (m.finish)
        ctx.complete();
    })
    .handles<undo>([effects](const undo& m, tally& s, depot::saga_context& ctx) {
      if (undo_fails)
        throw step_failed{"undo of " + m.what + " failed"};
      s.seen.push_back("undo:" + m.what);
      record_effect(ctx, effects, "undo:" + m.what);
    })
    .handles<waited_too_long>([](const waited_too_long&, tally& s, depot::saga_context& ctx) {
      s.seen.push_back("timeout");
      ctx.compensate("waited too long");
    });
  saga.queue().on_exception<step_failed>().retry_times(1).then_dead_letter();
  return saga;
}

struct saga_fixture {
  test_schema s;
  depot::routing app;
  depot::persistence::store_settings store = s.store_config();

  saga_fixture() {
    create_effects_table(s);
    undo_fails = false;
  }

  [[nodiscard]] std::string status(const std::string& id) {
    return s.text(fmt::format("SELECT status FROM saga_tally WHERE id = '{}'", id));
  }
  [[nodiscard]] bool reaches(const std::string& id, const std::string& wanted,
                             std::chrono::milliseconds timeout = 10s) {
    return wait_until([&] { return status(id) == wanted; }, timeout);
  }
  [[nodiscard]] std::string seen(const std::string& id) {
    return s.text(fmt::format("SELECT state->>'seen' FROM saga_tally WHERE id = '{}'", id));
  }
  [[nodiscard]] std::string undone() {
    return s.text("SELECT string_agg(tag, ',' ORDER BY handled_at) FROM effects");
  }
};

} // namespace

TEST_CASE_FIXTURE(saga_fixture, "each step commits the saga's state with its messages") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  CHECK(s.number("SELECT count(*) FROM information_schema.tables WHERE table_name = 'saga_tally' "
                 "AND table_schema = '" +
                 s.name() + "'") == 1);

  node.send(open_tally{"t-1", ""});
  node.send(add_one{"t-1", "a"});
  node.send(add_one{"t-1", "b", "", false, true});
  REQUIRE(reaches("t-1", "completed"));
  CHECK(seen("t-1") == R"(["open", "a", "b"])");
  CHECK(s.number("SELECT (state->>'count')::int FROM saga_tally") == 2);
  CHECK(s.number("SELECT version FROM saga_tally") == 3);
  CHECK(s.text("SELECT string_agg(s->>'kind', ',') FROM saga_tally, jsonb_array_elements(steps) "
               "s") == "start,step,step");
  CHECK(s.number("SELECT count(*) FROM saga_tally WHERE keep_until > now() + interval '6 days'") ==
        1);

  // A message for a saga that is done is ignored; so is one for a saga that does not exist.
  node.send(add_one{"t-1", "late"});
  node.send(add_one{"t-2", "orphan"});
  REQUIRE(node.wait_idle(10s));
  CHECK(seen("t-1") == R"(["open", "a", "b"])");
  CHECK(s.number("SELECT count(*) FROM saga_tally") == 1);
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
}

TEST_CASE_FIXTURE(saga_fixture, "a start for a saga that exists is ignored") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  node.send(open_tally{"t-1", ""});
  node.send(add_one{"t-1", "a"});
  node.send(open_tally{"t-1", ""});
  REQUIRE(node.wait_idle(10s));
  CHECK(seen("t-1") == R"(["open", "a"])");
  CHECK(s.number("SELECT version FROM saga_tally") == 2);
  CHECK(status("t-1") == "running");
}

TEST_CASE_FIXTURE(saga_fixture, "a message for a saga that does not exist goes to not-found") {
  tally_saga(app, s.table("effects"))
    .on_not_found([this](const depot::envelope& e, depot::context& ctx) {
      record_effect(ctx, s.table("effects"), "not-found:" + e.key);
    });
  depot::node node{app, s.node_config()};
  node.start();
  node.send(add_one{"t-9", "a"});
  REQUIRE(wait_until([&] { return undone() == "not-found:t-9"; }));
  CHECK(s.number("SELECT count(*) FROM saga_tally") == 0);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
}

TEST_CASE_FIXTURE(saga_fixture, "compensations run last recorded first, each durably") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  node.send(open_tally{"t-1", "own"});
  node.send(add_one{"t-1", "a", "elsewhere"});
  node.send(add_one{"t-1", "b", "own"});
  node.send(add_one{"t-1", "c", "own", false, false, true}); // records c, then gives up
  REQUIRE(reaches("t-1", "compensated"));
  REQUIRE(node.wait_idle(10s));
  CHECK(undone() == "undo:c,undo:b,undo:a,undo:open");
  CHECK(s.text("SELECT reason FROM saga_tally") == "gave up at c");
  CHECK(s.number("SELECT jsonb_array_length(compensations) FROM saga_tally") == 0);
  // The one handled on another queue counts as done once its handler committed.
  CHECK(s.text("SELECT string_agg(s->>'type', ',') FROM saga_tally, jsonb_array_elements(steps) s "
               "WHERE s->>'kind' = 'compensation'") == "it.undo,it.undo,it.undo-elsewhere,it.undo");
}

TEST_CASE_FIXTURE(saga_fixture,
                  "a step that fails for good compensates instead of dead-lettering") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  node.send(open_tally{"t-1", "own"});
  node.send(add_one{"t-1", "a", "own"});
  node.send(add_one{"t-1", "b", "own", true}); // throws on both attempts
  REQUIRE(reaches("t-1", "compensated"));
  REQUIRE(node.wait_idle(10s));
  CHECK(undone() == "undo:a,undo:open");
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
  CHECK(s.text("SELECT reason FROM saga_tally") ==
        "step it.add-one failed: (anonymous namespace)::step_failed: step b failed");
  CHECK(node.stats().retried == 1);
}

TEST_CASE_FIXTURE(saga_fixture,
                  "a failed compensation leaves the saga stuck until it is replayed") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  node.send(open_tally{"t-1", "own"});
  node.send(add_one{"t-1", "a", "own"});
  REQUIRE(node.wait_idle(10s));
  undo_fails = true;
  node.cancel_saga("tally", "t-1", "operator");
  REQUIRE(reaches("t-1", "stuck"));
  CHECK(s.text("SELECT reason FROM saga_tally") ==
        "compensation it.undo failed: (anonymous namespace)::step_failed: undo of a failed");
  CHECK(s.number("SELECT count(*) FROM dead_letters WHERE message_type = 'it.undo'") == 1);
  CHECK(undone().empty());

  undo_fails = false;
  CHECK(node.replay_dead_letters({}).size() == 1);
  REQUIRE(reaches("t-1", "compensated"));
  REQUIRE(node.wait_idle(10s));
  CHECK(undone() == "undo:a,undo:open");
}

TEST_CASE_FIXTURE(saga_fixture, "cancel compensates a running saga and nothing else") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  node.send(open_tally{"t-1", "own"});
  node.send(open_tally{"t-2", "own"});
  node.send(add_one{"t-2", "a", "", false, true});
  REQUIRE(reaches("t-2", "completed"));
  node.cancel_saga("tally", "t-1", "customer changed their mind");
  node.cancel_saga("tally", "t-2");
  REQUIRE(reaches("t-1", "compensated"));
  REQUIRE(node.wait_idle(10s));
  CHECK(s.text("SELECT reason FROM saga_tally WHERE id = 't-1'") ==
        "cancelled: customer changed their mind");
  CHECK(status("t-2") == "completed");
  CHECK(undone() == "undo:open");
  CHECK_THROWS_AS(node.cancel_saga("no-such-saga", "t-1"), depot::no_route);
}

TEST_CASE_FIXTURE(saga_fixture, "a timeout fires unless the step it guards comes first") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  // t-1 waits for an add_one that never comes: its timeout compensates.
  node.send(open_tally{"t-1", "own"});
  node.send(add_one{"t-1", "a", "", false, false, false, 100});
  REQUIRE(reaches("t-1", "compensated"));
  CHECK(s.text("SELECT reason FROM saga_tally WHERE id = 't-1'") == "waited too long");
  CHECK(seen("t-1") == R"(["open", "a", "timeout", "undo:open"])");

  // t-2's next add_one comes in time: the timeout is cancelled, never handled.
  node.send(open_tally{"t-2", ""});
  node.send_all(std::vector<add_one>{{"t-2", "a", "", false, false, false, 300}, {"t-2", "b"}});
  REQUIRE(wait_until([&] { return seen("t-2") == R"(["open", "a", "b"])"; }));
  CHECK(s.number("SELECT jsonb_array_length(timeouts) FROM saga_tally WHERE id = 't-2'") == 0);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE message_type = 'it.waited-too-long'") == 0);
  std::this_thread::sleep_for(400ms); // past when it was due
  REQUIRE(node.wait_idle(10s));
  CHECK(status("t-2") == "running");
  CHECK(seen("t-2") == R"(["open", "a", "b"])");
}

TEST_CASE_FIXTURE(saga_fixture, "completing cancels pending timeouts; a stale one is ignored") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  node.send(open_tally{"t-1", ""});
  node.send(add_one{"t-1", "a", "", false, false, false, 60'000});
  REQUIRE(wait_until([&] {
    return s.number(
             "SELECT count(*) FROM incoming WHERE message_type = 'it.waited-too-long' AND "
             "status = 'scheduled'") == 1;
  }));
  // b ends that timeout, requests one of its own and completes: completing cancels it.
  node.send(add_one{"t-1", "b", "", false, true, false, 60'000});
  REQUIRE(reaches("t-1", "completed"));
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
  CHECK(s.number("SELECT jsonb_array_length(timeouts) FROM saga_tally") == 0);

  // A timeout envelope the saga no longer waits for (sent as if it were one) changes nothing.
  node.send(open_tally{"t-2", ""});
  node.send(waited_too_long{"t-2"}, {.headers = {{"depot-saga-timeout", "tally"}}});
  REQUIRE(node.wait_idle(10s));
  CHECK(status("t-2") == "running");
  CHECK(seen("t-2") == R"(["open"])");
}

TEST_CASE_FIXTURE(saga_fixture, "a saga past its deadline compensates, or takes its other path") {
  tally_saga(app, s.table("effects")).deadline(100ms);
  depot::node node{app, s.node_config()};
  node.start();
  node.send(open_tally{"t-1", "own"});
  REQUIRE(reaches("t-1", "compensated"));
  CHECK(s.text("SELECT reason FROM saga_tally") == "its deadline passed");
  CHECK(undone() == "undo:open");

  // Completed in time: the deadline is cancelled with the other timeouts.
  node.send(open_tally{"t-2", "own"});
  node.send(add_one{"t-2", "a", "", false, true});
  REQUIRE(reaches("t-2", "completed"));
  CHECK(s.number("SELECT count(*) FROM incoming WHERE message_type = 'tally.deadline'") == 0);
}

TEST_CASE_FIXTURE(saga_fixture, "a deadline handler chooses another path") {
  tally_saga(app, s.table("effects"))
    .deadline(100ms)
    .on_deadline([](tally& t, depot::saga_context& ctx) {
      t.seen.push_back("deadline");
      ctx.complete();
    });
  depot::node node{app, s.node_config()};
  node.start();
  node.send(open_tally{"t-1", "own"});
  REQUIRE(reaches("t-1", "completed"));
  CHECK(seen("t-1") == R"(["open", "deadline"])");
  CHECK(undone().empty());
}

TEST_CASE_FIXTURE(saga_fixture, "a scheduled envelope can be cancelled by its id") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  auto id = node.schedule(open_tally{"t-1", ""}, 1h);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE status = 'scheduled'") == 1);
  CHECK(node.cancel(id));
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
  CHECK_FALSE(node.cancel(id));
  CHECK_FALSE(node.cancel("not-a-uuid"));
}

TEST_CASE_FIXTURE(saga_fixture, "messages of one saga on two workers and two nodes lose nothing") {
  tally_saga(app, s.table("effects"));
  auto config = s.node_config();
  config.concurrency = 2;
  config.batch_size = 7; // many small transactions, to interleave the nodes
  depot::node a{app, config};
  depot::node b{app, config};
  a.start();
  b.start();
  constexpr int sagas = 5, steps = 60;
  std::vector<open_tally> opens;
  for (int i = 0; i < sagas; ++i)
    opens.push_back({fmt::format("t-{}", i), ""});
  a.send_all(opens);
  std::vector<add_one> adds;
  for (int k = 0; k < steps; ++k)
    for (int i = 0; i < sagas; ++i)
      adds.push_back({fmt::format("t-{}", i), std::to_string(k)});
  // Half from each node, all at once.
  std::vector<add_one> first(adds.begin(), adds.begin() + adds.size() / 2);
  std::vector<add_one> second(adds.begin() + adds.size() / 2, adds.end());
  a.send_all(first);
  b.send_all(second);
  REQUIRE(wait_until(
    [&] { return s.number("SELECT sum((state->>'count')::int) FROM saga_tally") == sagas * steps; },
    30s));
  CHECK(s.number("SELECT count(*) FROM saga_tally WHERE version = " + std::to_string(steps + 1)) ==
        sagas);
  // Each saga saw its steps in the order they were sent.
  std::string expected = R"(["open")";
  for (int k = 0; k < steps; ++k)
    expected += fmt::format(R"(, "{}")", k);
  expected += "]";
  CHECK(seen("t-3") == expected);
  CHECK(a.stats().handled + b.stats().handled == sagas * (steps + 1));
}

TEST_CASE_FIXTURE(saga_fixture, "a finished saga is removed once its retention passed") {
  tally_saga(app, s.table("effects"));
  auto config = s.node_config();
  config.saga_retention = 0ms;
  config.cleanup_interval = 100ms;
  depot::node node{app, config};
  node.start();
  node.send(open_tally{"t-1", ""});
  node.send(open_tally{"t-2", ""});
  node.send(add_one{"t-1", "a", "", false, true});
  REQUIRE(node.wait_idle(10s));
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM saga_tally") == 1; }));
  CHECK(status("t-2") == "running");
}

TEST_CASE_FIXTURE(saga_fixture, "the store lists and shows sagas") {
  tally_saga(app, s.table("effects"));
  depot::node node{app, s.node_config()};
  node.start();
  node.send(open_tally{"t-1", "own"});
  node.send(open_tally{"t-2", ""});
  node.send(add_one{"t-2", "a", "", false, true});
  REQUIRE(reaches("t-2", "completed"));
  depot::persistence::connection conn{store};
  depot::persistence::saga_store sagas{conn};
  auto all = sagas.list(app.sagas(), nullptr, std::nullopt, 10);
  REQUIRE(all.size() == 2);
  CHECK(all[0].type == "tally");
  auto running = sagas.list(app.sagas(), app.find_saga("tally"), depot::saga_status::running, 10);
  REQUIRE(running.size() == 1);
  CHECK(running[0].pending_compensations == 1);
  auto row = sagas.find(*app.find_saga("tally"), "t-1");
  REQUIRE(row);
  CHECK(row->compensations.at(0).type == "it.undo");
  CHECK(row->compensations.at(0).step == "it.open-tally");
  CHECK(row->steps.at(0).kind == "start");
  CHECK_FALSE(sagas.find(*app.find_saga("tally"), "t-3"));
  CHECK(sagas.missing_tables(app.sagas()).empty());
}
