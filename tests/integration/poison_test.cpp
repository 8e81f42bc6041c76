// Poison input written straight into the store, as any producer on the database could: bodies
// that cannot be decoded safely, messages that break their type's rules, handlers whose failure
// text Postgres would refuse. Each must end as a dead letter with its reason while the node
// stays up and goes on handling.
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "depot/actors/node.hpp"
#include "depot/runtime/routing.hpp"
#include "fixture.hpp"

using namespace depot_it;

namespace {

struct debit {
  std::string account_id;
  std::int64_t amount = 0;
  void validate() const {
    if (amount < 1)
      throw depot::validation_error{"amount must be at least 1"};
  }
};
DEPOT_MESSAGE(debit, "it.debit", account_id, amount)

struct garbled {
  std::string tag;
};
DEPOT_MESSAGE(garbled, "it.garbled", tag)

} // namespace

TEST_CASE("poison rows in the store are dead-lettered once with the reason and the node goes on") {
  test_schema s;
  std::atomic<int> debits{0};
  std::atomic<std::int64_t> total{0};
  depot::routing app;
  app.handle<debit>([&](const debit& d, depot::context&) {
    ++debits;
    total += d.amount;
  });
  app.handle<garbled>([](const garbled&, depot::context&) {
    throw std::runtime_error{"bytes \xff\xfe that are not UTF-8"};
  });
  auto config = s.node_config();
  config.failures.max_attempts = 1;
  depot::node node{app, config};
  node.start();

  auto insert = [&](const std::string& queue, const std::string& body_sql) {
    s.exec("INSERT INTO incoming (id, queue, message_type, body) VALUES (gen_random_uuid(), '" +
           queue + "', '" + queue + "', " + body_sql + ")");
  };
  // The reproductions: a million levels of arrays, a NUL inside account_id, amounts that cannot
  // be a debit, and a handler whose exception text is not valid UTF-8.
  insert("it.debit", R"('{"account_id":"acct-1","amount":1,"x":' || repeat('[', 1000000) || )"
                     R"(repeat(']', 1000000) || '}')");
  insert("it.debit", R"('{"account_id":"acct-2\u0000evil","amount":7}')");
  insert("it.debit", R"('{"account_id":"acct-3","amount":-9223372036854775808}')");
  insert("it.debit", R"('{"account_id":"acct-3","amount":0}')");
  insert("it.garbled", R"('{"tag":"g"}')");
  insert("it.debit", R"('{"account_id":"acct-4","amount":5}')");

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM dead_letters") == 5; }));
  REQUIRE(wait_until([&] { return debits == 1; }));
  CHECK(total == 5);
  auto reasons = s.text(
    "SELECT string_agg(exception_type || ': ' || exception_message, E'\\n' "
    "ORDER BY exception_message) FROM dead_letters");
  INFO(reasons);
  CHECK(s.number("SELECT count(*) FROM dead_letters WHERE exception_type = 'depot::decode_error' "
                 "AND exception_message LIKE 'JSON nested deeper than 100 levels%'") == 1);
  CHECK(s.number("SELECT count(*) FROM dead_letters WHERE exception_type = 'depot::decode_error' "
                 "AND exception_message LIKE '%NUL character%'") == 1);
  CHECK(s.number("SELECT count(*) FROM dead_letters WHERE exception_type = "
                 "'depot::validation_error' AND exception_message = 'amount must be at least "
                 "1'") == 2);
  CHECK(s.text("SELECT exception_message FROM dead_letters WHERE message_type = 'it.garbled'") ==
        "bytes \xEF\xBF\xBD\xEF\xBF\xBD that are not UTF-8");
  CHECK(s.number("SELECT count(*) FROM dead_letters WHERE attempts = 1") == 5);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE status <> 'handled'") == 0);
  CHECK(node.stats().retried == 0);
}

TEST_CASE("a send refuses a body that would be poison in the store and stores nothing") {
  test_schema s;
  depot::routing app;
  app.handle<debit>([](const debit&, depot::context&) {});
  depot::node node{app, s.node_config()};
  node.start();
  auto send = [&](std::string body) {
    return node.send_bodies("it.debit", {std::move(body)}, {}, 0, depot::dispatch::send);
  };
  CHECK_THROWS_AS(send(R"({"account_id":"acct-2\u0000evil","amount":7})"), depot::decode_error);
  CHECK_THROWS_AS(send(R"({"account_id":"a","amount":-1})"), depot::validation_error);
  CHECK_THROWS_AS(send("{\"x\":" + std::string(200'000, '[') + std::string(200'000, ']') + "}"),
                  depot::decode_error);
  CHECK_THROWS_AS(
    node.send_bodies("it.unregistered", {R"({"a":"\u0000"})"}, {}, 0, depot::dispatch::send),
    depot::decode_error);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
}
