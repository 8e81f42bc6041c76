// Unit tests of the default failure policy.
#include <doctest/doctest.h>

#include <stdexcept>

#include "depot/runtime/failure_policy.hpp"
#include "depot/runtime/message.hpp"
#include "depot/runtime/routing.hpp"

namespace {

template <class E>
std::exception_ptr thrown(E e) {
  return std::make_exception_ptr(std::move(e));
}

depot::envelope after_attempts(int attempts) {
  depot::envelope e;
  e.attempts = attempts;
  return e;
}

} // namespace

TEST_CASE("a handler exception is retried later with growing delays until max attempts") {
  depot::failure_policy policy{.max_attempts = 3, .retry_delay = std::chrono::milliseconds{100}};
  auto now = depot::now_micros();
  auto first = decide(depot::default_error_policy(policy), after_attempts(0),
                      thrown(std::runtime_error{"boom"}));
  CHECK(first.what == depot::failure_action::retry_later);
  CHECK(first.retry_at >= now + 100'000);
  CHECK(first.retry_at <= depot::now_micros() + 125'000);
  auto second = decide(depot::default_error_policy(policy), after_attempts(1),
                       thrown(std::runtime_error{"boom"}));
  CHECK(second.what == depot::failure_action::retry_later);
  CHECK(second.retry_at >= now + 400'000);
  auto last = decide(depot::default_error_policy(policy), after_attempts(2),
                     thrown(std::runtime_error{"boom"}));
  CHECK(last.what == depot::failure_action::dead_letter);
  CHECK(last.exception_type == "std::runtime_error");
  CHECK(last.reason == "boom");
}

TEST_CASE("retry delays never exceed the maximum") {
  depot::failure_policy policy{.max_attempts = 50,
                               .retry_delay = std::chrono::milliseconds{1000},
                               .max_retry_delay = std::chrono::milliseconds{5000}};
  auto d = decide(depot::default_error_policy(policy), after_attempts(20),
                  thrown(std::runtime_error{"x"}));
  CHECK(d.what == depot::failure_action::retry_later);
  CHECK(d.retry_at <= depot::now_micros() + 5'000'000 + 1'250'000);
}

TEST_CASE("undecodable bodies, unknown types and validation errors go to dead letters at once") {
  depot::failure_policy policy;
  auto bad = decide(depot::default_error_policy(policy), after_attempts(0),
                    thrown(depot::decode_error{"missing field 'x'"}));
  CHECK(bad.what == depot::failure_action::dead_letter);
  CHECK(bad.exception_type == "depot::decode_error");
  CHECK(bad.reason == "missing field 'x'");
  auto unknown = decide(depot::default_error_policy(policy), after_attempts(0),
                        thrown(depot::unknown_message_type{"nope"}));
  CHECK(unknown.what == depot::failure_action::dead_letter);
  CHECK(unknown.exception_type == "depot::unknown_message_type");
  auto invalid = decide(depot::default_error_policy(policy), after_attempts(0),
                        thrown(depot::validation_error{"negative"}));
  CHECK(invalid.what == depot::failure_action::dead_letter);
  CHECK(invalid.exception_type == "depot::validation_error");
  CHECK(invalid.reason == "negative");
}

TEST_CASE("a non-standard exception is named as such") {
  depot::failure_policy policy{.max_attempts = 1};
  auto d =
    decide(depot::default_error_policy(policy), after_attempts(0), std::make_exception_ptr(42));
  CHECK(d.what == depot::failure_action::dead_letter);
  CHECK(d.exception_type == "unknown");
}

// -- declared error policies --------------------------------------------------------------------

namespace {

using namespace std::chrono_literals;

struct ledger_unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ledger_locked : ledger_unavailable {
  using ledger_unavailable::ledger_unavailable;
};

struct ping {
  int n = 0;
};
DEPOT_MESSAGE(ping, "unit.ping", n)

} // namespace

TEST_CASE("a chain's steps cover failures in order, and past the chain is a dead letter") {
  depot::error_policy chain;
  chain.retry_times(2).then_retry_with_cooldown(50ms, 250ms, 1s).then_requeue().then_discard();
  auto at = [&](int attempts) {
    return decide(chain, after_attempts(attempts), thrown(ledger_unavailable{"down"}));
  };
  CHECK(at(0).what == depot::failure_action::retry_inline);
  CHECK(at(1).what == depot::failure_action::retry_inline);
  auto now = depot::now_micros();
  auto third = at(2);
  CHECK(third.what == depot::failure_action::retry_later);
  CHECK(third.retry_at >= now + 50'000);
  CHECK(third.retry_at < now + 250'000);
  CHECK(at(3).retry_at >= now + 250'000);
  CHECK(at(4).retry_at >= now + 1'000'000);
  CHECK(at(5).what == depot::failure_action::requeue);
  CHECK(at(6).what == depot::failure_action::discard);
  CHECK(at(60).what == depot::failure_action::discard);
  CHECK(chain.describe() ==
        "retry 2 time(s), then retry after 50ms, 250ms, 1000ms, then requeue 1 time(s), then "
        "discard");

  depot::error_policy open_ended;
  open_ended.retry_times(1);
  CHECK(decide(open_ended, after_attempts(1), thrown(ledger_unavailable{"x"})).what ==
        depot::failure_action::dead_letter);
  CHECK(open_ended.describe() == "retry 1 time(s), then dead-letter");
}

TEST_CASE("backoff grows by its factor up to its cap; a pause says how long") {
  depot::error_policy chain;
  chain.retry_with_backoff(4, 100ms, 300ms, 2.0).then_pause_queue(5s).then_dead_letter();
  auto now = depot::now_micros();
  auto delay_of = [&](int attempts) {
    return decide(chain, after_attempts(attempts), thrown(ledger_unavailable{"x"})).retry_at - now;
  };
  CHECK(delay_of(0) >= 100'000);
  CHECK(delay_of(0) < 126'000 + 10'000);
  CHECK(delay_of(1) >= 200'000);
  CHECK(delay_of(2) >= 300'000); // capped
  CHECK(delay_of(3) < 376'000 + 10'000);
  auto pause = decide(chain, after_attempts(4), thrown(ledger_unavailable{"x"}));
  CHECK(pause.what == depot::failure_action::pause_queue);
  CHECK(pause.pause == 5s);
  CHECK(decide(chain, after_attempts(5), thrown(ledger_unavailable{"x"})).what ==
        depot::failure_action::dead_letter);
}

TEST_CASE("no step follows the end of a chain, and counts are positive") {
  depot::error_policy chain;
  chain.retry_times(1).then_dead_letter();
  CHECK_THROWS_AS(chain.requeue(), std::logic_error);
  CHECK_THROWS_AS(depot::error_policy{}.retry_times(0), std::invalid_argument);
  CHECK_THROWS_AS(depot::error_policy{}.retry_with_backoff(2, 1s, 10ms), std::invalid_argument);
}

TEST_CASE("permanent errors are dead-lettered at once whatever the chain says") {
  depot::error_policy chain;
  chain.retry_times(5);
  CHECK(decide(chain, after_attempts(0), thrown(depot::validation_error{"amount"})).what ==
        depot::failure_action::dead_letter);
}

TEST_CASE("the handler's rule comes first, then the queue's, then the application's") {
  depot::routing app;
  app.handle<ping>([](const ping&, depot::context&) {})
    .on_queue("unit.q")
    .on_exception<ledger_locked>()
    .requeue();
  app.queue("unit.q").on_exception<ledger_unavailable>().discard();
  app.on_exception<ledger_unavailable>().retry_times(3);
  app.on_exception<std::logic_error>().retry_times(1);

  auto chain = [&](std::string_view queue, std::string_view type, std::exception_ptr e) {
    return app.error_policy_for(queue, type, e);
  };
  auto locked = thrown(ledger_locked{"locked"});
  auto unavailable = thrown(ledger_unavailable{"down"});
  REQUIRE(chain("unit.q", "unit.ping", locked) != nullptr);
  CHECK(chain("unit.q", "unit.ping", locked)->steps().front().action ==
        depot::failure_action::requeue);
  // ledger_unavailable: the handler has no rule for it (ledger_locked is narrower): the queue's.
  CHECK(chain("unit.q", "unit.ping", unavailable)->steps().front().action ==
        depot::failure_action::discard);
  // Another queue: the application's, matched by base class too.
  CHECK(chain("unit.other", "unit.other", locked)->steps().front().action ==
        depot::failure_action::retry_inline);
  CHECK(chain("unit.q", "unit.ping", thrown(std::logic_error{"x"}))->steps().front().times == 1);
  CHECK(chain("unit.q", "unit.ping", thrown(std::runtime_error{"x"})) == nullptr);
  auto lines = app.describe_error_policies();
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] ==
        "handler of unit.ping: (anonymous namespace)::ledger_locked: requeue 1 "
        "time(s), then dead-letter");
  CHECK(lines[1] == "queue unit.q: (anonymous namespace)::ledger_unavailable: discard");
}

TEST_CASE("faults are published for the types asked for, never for depot.fault itself") {
  depot::routing app;
  CHECK(!app.publishes_faults_of("unit.ping"));
  app.publish_faults<ping>();
  CHECK(app.publishes_faults_of("unit.ping"));
  CHECK(!app.publishes_faults_of("unit.other"));
  app.publish_faults();
  CHECK(app.publishes_faults_of("unit.other"));
  CHECK(!app.publishes_faults_of("depot.fault"));
}
