// The middleware pipeline on a node against Postgres: refusals by authorization and validation
// end in dead letters with their reasons, middleware writes commit or roll back with the
// handler, a trace travels through stored envelopes, and a rate limit defers the excess without
// losing or repeating any of it.
#include <doctest/doctest.h>

#include <stdexcept>

#include <fmt/format.h>
#include <soci/soci.h>

#include "depot/actors/node.hpp"
#include "depot/runtime/routing.hpp"
#include "fixture.hpp"

using namespace depot_it;
using namespace std::chrono_literals;

namespace {

struct payment {
  std::string account;
  std::int64_t amount = 0;
  std::string tag;
};
DEPOT_MESSAGE(payment, "it.payment", account, amount, tag)
DEPOT_MESSAGE_KEY(payment, account)

struct payment_made {
  std::string tag;
};
DEPOT_MESSAGE(payment_made, "it.payment-made", tag)

depot::send_options as(std::string principal) {
  return {.headers = {{depot::header::principal, std::move(principal)}}};
}

} // namespace

TEST_CASE("an envelope refused by authorization is dead-lettered at once with the reason") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  const auto effects = s.table("effects");
  app.use(depot::authorization([](const depot::envelope& e) {
    const auto& who = e.header_value(depot::header::principal);
    return who == "teller" ? depot::access::allow()
                           : depot::access::deny(fmt::format("'{}' is not a teller", who));
  }));
  app.handle<payment>(
    [effects](const payment& p, depot::context& ctx) { record_effect(ctx, effects, p.tag); });
  depot::node node{app, s.node_config()};
  node.start();

  node.send(payment{"acct-1", 5, "allowed"}, as("teller"));
  node.send(payment{"acct-1", 5, "refused"}, as("guest"));
  REQUIRE(wait_until([&] { return node.stats().handled == 1 && node.stats().dead_lettered == 1; }));
  CHECK(s.text("SELECT string_agg(tag, ',') FROM effects") == "allowed");
  CHECK(s.text("SELECT exception_type FROM dead_letters") == "depot::not_authorized");
  CHECK(s.text("SELECT exception_message FROM dead_letters").ends_with("'guest' is not a teller"));
  CHECK(s.number("SELECT attempts FROM dead_letters") == 1);
  CHECK(node.stats().retried == 0);
}

TEST_CASE("a validator's field errors refuse a send and dead-letter a stored envelope") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  const auto effects = s.table("effects");
  app.handle<payment>(
    [effects](const payment& p, depot::context& ctx) { record_effect(ctx, effects, p.tag); });
  app.validate<payment>([](const payment& p, depot::field_errors& errors) {
    if (p.amount < 1)
      errors.add("amount", "must be positive");
    if (p.account.empty())
      errors.add("account", "must not be empty");
  });
  depot::node node{app, s.node_config()};
  node.start();

  const auto expected =
    "it.payment is invalid: amount: must be positive; account: must not be "
    "empty";
  try {
    node.send(payment{"", 0, "sent"});
    FAIL("the send was not refused");
  } catch (const depot::validation_error& e) {
    CHECK(std::string_view{e.what()}.starts_with(expected));
  }
  // One stored by a producer that skipped the check reaches the validation middleware.
  s.exec(
    "INSERT INTO incoming (id, queue, message_type, body) VALUES (gen_random_uuid(), "
    "'it.payment', 'it.payment', '{\"account\":\"\",\"amount\":0,\"tag\":\"stored\"}')");
  REQUIRE(wait_until([&] { return node.stats().dead_lettered == 1; }));
  CHECK(s.number("SELECT count(*) FROM dead_letters WHERE exception_type = "
                 "'depot::validation_error' AND exception_message = '" +
                 std::string{expected} + "'") == 2); // the refused send's and the stored one's
  node.send(payment{"acct-1", 3, "valid"});
  REQUIRE(wait_until([&] { return node.stats().handled == 1; }));
  CHECK(s.text("SELECT string_agg(tag, ',') FROM effects") == "valid");
}

TEST_CASE("what middleware writes commits with the handler and rolls back with its failure") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  const auto effects = s.table("effects");
  app.use(depot::before("audit", [effects](const depot::envelope& e, depot::context& ctx) {
    record_effect(ctx, effects, "audit " + e.id);
  }));
  app.handle<payment>([effects](const payment& p, depot::context& ctx) {
    if (p.amount < 0)
      throw std::runtime_error{"negative"};
    record_effect(ctx, effects, p.tag);
  });
  auto config = s.node_config();
  config.failures.max_attempts = 1;
  depot::node node{app, config};
  node.start();

  node.send(payment{"acct-1", 1, "ok"});
  node.send(payment{"acct-1", -1, "fails"});
  REQUIRE(wait_until([&] { return node.stats().handled == 1 && node.stats().dead_lettered == 1; }));
  CHECK(s.number("SELECT count(*) FROM effects WHERE tag LIKE 'audit %'") == 1);
  CHECK(s.number("SELECT count(*) FROM effects WHERE tag = 'ok'") == 1);
}

TEST_CASE("tracing carries one trace id through stored envelopes, a new span per handling") {
  test_schema s;
  s.exec("CREATE TABLE spans (tag text, traceparent text)");
  depot::routing app;
  const auto spans = s.table("spans");
  auto record = [spans](depot::context& ctx, const std::string& tag) {
    auto parent = ctx.incoming().header_value(depot::header::traceparent);
    ctx.db() << "INSERT INTO " + spans + " VALUES (:t, :p)", soci::use(tag), soci::use(parent);
  };
  app.use(depot::tracing(depot::log_level::debug));
  app.handle<payment>([record](const payment& p, depot::context& ctx) {
    record(ctx, "payment");
    ctx.publish(payment_made{p.tag});
  });
  app.handle<payment_made>(
    [record](const payment_made&, depot::context& ctx) { record(ctx, "payment-made"); });
  depot::node node{app, s.node_config()};
  node.start();

  const std::string origin = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  node.send(payment{"acct-1", 1, "t"},
            {.headers = {{std::string{depot::header::traceparent}, origin}}});
  REQUIRE(wait_until([&] { return node.stats().handled == 2; }));
  CHECK(s.text("SELECT traceparent FROM spans WHERE tag = 'payment'") == origin);
  auto next =
    depot::trace_context::parse(s.text("SELECT traceparent FROM spans WHERE tag = 'payment-made'"));
  REQUIRE(next);
  CHECK(next->trace_id == "0af7651916cd43dd8448eb211c80319c");
  CHECK(next->span_id != "b7ad6b7169203331");
}

TEST_CASE("a rate limit per key defers the excess; every envelope is handled exactly once") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  const auto effects = s.table("effects");
  app
    .handle<payment>([effects](const payment& p, depot::context& ctx) {
      record_effect(ctx, effects, p.account + " " + p.tag);
    })
    .use(depot::rate_limit_per_key(4, 1s)); // bursts of 4, then one every 250 ms
  depot::node node{app, s.node_config()};
  node.start();

  for (int i = 0; i < 10; ++i)
    node.send(payment{"acct-1", 1, std::to_string(i)});
  node.send(payment{"acct-2", 1, "other"});
  REQUIRE(wait_until([&] { return node.stats().handled == 11; }, 20s));
  CHECK(node.stats().deferred == 6);
  CHECK(node.stats().retried == 0);
  CHECK(s.number("SELECT count(DISTINCT envelope_id) FROM effects") == 11);
  CHECK(s.number("SELECT count(*) FROM effects") == 11);
  // Six deferred handlings of acct-1 spread at 250 ms: the limit held. (A lower bound on time,
  // which a slow machine only lengthens.)
  CHECK(s.number("SELECT (extract(epoch FROM max(handled_at) - min(handled_at)) * 1000)::bigint "
                 "FROM effects WHERE tag LIKE 'acct-1 %'") >= 1400);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
}
