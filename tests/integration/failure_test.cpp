// Failing handlers: rollback of their effects and sends, isolation inside a batch, retries, and
// envelopes that can never succeed (undecodable bodies, unknown types).
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <thread>

#include <soci/soci.h>

#include "depot/actors/node.hpp"
#include "depot/runtime/routing.hpp"
#include "fixture.hpp"

using namespace depot_it;

namespace {

struct risky {
  std::string tag;
  bool fail = false;
};
DEPOT_MESSAGE(risky, "it.risky", tag, fail)

struct follow_up {
  std::string tag;
};
DEPOT_MESSAGE(follow_up, "it.follow-up", tag)

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("a handler that throws leaves no effects and no outgoing envelopes") {
  test_schema s;
  create_effects_table(s);
  std::atomic<int> follow_ups{0};
  depot::routing app;
  app.handle<risky>([effects = s.table("effects")](const risky& m, depot::context& ctx) {
    record_effect(ctx, effects, m.tag);
    ctx.send(follow_up{m.tag});
    ctx.publish(follow_up{m.tag});
    throw std::runtime_error{"deliberate failure of " + m.tag};
  });
  app.handle<follow_up>([&](const follow_up&, depot::context&) { ++follow_ups; });
  auto config = s.node_config();
  config.failures.max_attempts = 3;
  depot::node node{app, config};
  node.start();

  node.send(risky{"doomed", true});

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM dead_letters") == 1; }));
  CHECK(s.text("SELECT message_type FROM dead_letters") == "it.risky");
  CHECK(s.text("SELECT exception_type FROM dead_letters") == "std::runtime_error");
  CHECK(s.text("SELECT exception_message FROM dead_letters") == "deliberate failure of doomed");
  CHECK(s.number("SELECT attempts FROM dead_letters") == 3);
  CHECK(s.number("SELECT count(*) FROM effects") == 0);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE message_type = 'it.follow-up'") == 0);
  CHECK(s.number("SELECT count(*) FROM outgoing") == 0);
  CHECK(follow_ups == 0);
  CHECK(wait_until([&] { return node.stats().dead_lettered == 1; }));
  CHECK(node.stats().retried == 2);
  CHECK(node.stats().handled == 0);
}

TEST_CASE(
  "a handler failure rolls back alone: one failing envelope of a batch keeps the others' "
  "effects") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  app.handle<risky>([effects = s.table("effects")](const risky& m, depot::context& ctx) {
    record_effect(ctx, effects, m.tag);
    if (m.fail)
      throw std::runtime_error{"deliberate failure of " + m.tag};
  });
  auto config = s.node_config();
  config.failures.max_attempts = 1; // dead-letter at once: the batch's outcome is final
  depot::node node{app, config};
  node.start();

  // One transaction: the node sees all five at once and claims them as one batch.
  node.send_all(
    std::vector<risky>{{"a", false}, {"b", false}, {"c", true}, {"d", false}, {"e", false}});

  REQUIRE(wait_until([&] {
    return s.number("SELECT count(*) FROM dead_letters") == 1 &&
           s.number("SELECT count(*) FROM incoming") == 0;
  }));
  CHECK(s.text("SELECT string_agg(tag, ',' ORDER BY tag) FROM effects") == "a,b,d,e");
  CHECK(contains(s.text("SELECT body FROM dead_letters"), "\"c\""));
  CHECK(wait_until([&] { return node.stats().handled == 4; }));
  CHECK(node.stats().dead_lettered == 1);
}

TEST_CASE("a failing envelope is retried and then succeeds") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  app.handle<risky>([effects = s.table("effects")](const risky& m, depot::context& ctx) {
    record_effect(ctx, effects, m.tag + " after " + std::to_string(ctx.incoming().attempts));
    if (ctx.incoming().attempts == 0)
      throw std::runtime_error{"the first attempt fails"};
  });
  depot::node node{app, s.node_config()};
  node.start();

  node.send(risky{"flaky", false});

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") >= 1; }));
  REQUIRE(node.wait_idle(10s));
  CHECK(s.text("SELECT string_agg(tag, ',') FROM effects") == "flaky after 1");
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
  CHECK(wait_until([&] { return node.stats().handled == 1; }));
  CHECK(node.stats().retried == 1);
  CHECK(node.stats().dead_lettered == 0);
}

TEST_CASE(
  "malformed JSON and an unknown message type go to dead letters with the reason and are "
  "not retried") {
  test_schema s;
  std::atomic<int> calls{0};
  depot::routing app;
  app.handle<follow_up>([&](const follow_up&, depot::context&) { ++calls; });
  auto config = s.node_config();
  config.failures.max_attempts = 5;
  depot::node node{app, config};
  node.start();
  test_store store{s.store_config()};

  const std::string queue{depot::type_name_of<follow_up>()};
  auto malformed = make_envelope(queue, queue, R"({"tag": )");
  auto missing_field = make_envelope(queue, queue, R"({"label": "x"})");
  auto unknown = make_envelope(queue, "it.unknown", R"({"tag": "x"})");
  REQUIRE(store.inbox.insert({malformed, missing_field, unknown}) == 3);

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM dead_letters") == 3; }));
  auto reason = [&](const depot::envelope& e) {
    return s.text(
      "SELECT exception_type || ': ' || exception_message FROM dead_letters WHERE id "
      "= '" +
      e.id + "'");
  };
  CHECK(contains(reason(malformed), "depot::decode_error: malformed JSON"));
  CHECK(contains(reason(missing_field), "depot::decode_error: missing field 'tag'"));
  CHECK(contains(reason(unknown), "depot::unknown_message_type"));
  CHECK(contains(reason(unknown), "no handler for message type 'it.unknown'"));
  CHECK(s.number("SELECT count(*) FROM dead_letters WHERE attempts = 1") == 3);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
  CHECK(calls == 0);
  CHECK(wait_until([&] { return node.stats().dead_lettered == 3; }));
  CHECK(node.stats().retried == 0);
}

TEST_CASE(
  "a handler that loses a deadlock inside a batch is requeued, not failed, and frees the "
  "batch's locks") {
  test_schema s;
  create_effects_table(s);
  s.exec("CREATE TABLE rows (id text PRIMARY KEY)");
  s.exec("INSERT INTO rows VALUES ('a'), ('b')");
  std::atomic<bool> b_locked{false};
  depot::routing app;
  app.handle<risky>(
    [&, effects = s.table("effects"), rows = s.table("rows")](const risky& m, depot::context& ctx) {
      if (m.fail)
        throw std::runtime_error{"deliberate failure of " + m.tag}; // sends the batch to isolation
      std::string id;
      ctx.db() << "SELECT id FROM " + rows + " WHERE id = 'b' FOR UPDATE", soci::into(id);
      b_locked = true;
      ctx.db() << "SELECT id FROM " + rows + " WHERE id = 'a' FOR UPDATE", soci::into(id);
      record_effect(ctx, effects, m.tag + " after " + std::to_string(ctx.incoming().attempts));
    });
  auto config = s.node_config();
  config.failures.max_attempts = 1; // a failure counted against "locks" would dead-letter it
  depot::node node{app, config};

  // Another transaction holds row a, and asks for row b once the handler holds it: a deadlock,
  // and the handler waited first, so its statement is the one Postgres aborts.
  auto other = depot::persistence::open_session(s.db());
  soci::transaction tr{*other};
  std::string id;
  *other << "SELECT id FROM " + s.table("rows") + " WHERE id = 'a' FOR UPDATE", soci::into(id);
  node.start();
  // One batch, the poison first (higher priority): its failure runs the batch in isolation.
  test_store store{s.store_config()};
  const std::string queue{depot::type_name_of<risky>()};
  auto poison = make_envelope(queue, queue, depot::to_json(risky{"poison", true}));
  poison.priority = 1;
  auto locks = make_envelope(queue, queue, depot::to_json(risky{"locks", false}));
  REQUIRE(store.inbox.insert({poison, locks}) == 2);
  REQUIRE(wait_until([&] { return b_locked.load(); }));
  std::this_thread::sleep_for(200ms); // the handler now waits for row a
  *other << "SELECT id FROM " + s.table("rows") + " WHERE id = 'b' FOR UPDATE", soci::into(id);
  tr.commit();

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM incoming") == 0; }));
  // Requeued with its attempts unchanged: the conflict was not its failure.
  CHECK(s.text("SELECT string_agg(tag, ',') FROM effects") == "locks after 0");
  CHECK(s.text("SELECT string_agg(message_type, ',') FROM dead_letters") == "it.risky");
  CHECK(contains(s.text("SELECT body FROM dead_letters"), "poison"));
}
