// Unit tests of the middleware pipeline and its built-ins: positions and scopes, the three
// shapes, authorization, validation listing every field error, trace context propagation and
// the rate limit's token buckets. No database.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "depot/runtime/failure_policy.hpp"
#include "depot/runtime/routing.hpp"

namespace middleware_test {

struct transfer {
  std::string from;
  std::string to;
  std::int64_t amount = 0;
};
DEPOT_MESSAGE(transfer, "mw.transfer", from, to, amount)
DEPOT_MESSAGE_KEY(transfer, from)

struct receipt {
  std::string from;
};
DEPOT_MESSAGE(receipt, "mw.receipt", from)

struct order {
  std::string id;
  std::int64_t quantity = 0;
  void validate(depot::field_errors& errors) const {
    if (id.empty())
      errors.add("id", "must not be empty");
    if (quantity < 1)
      errors.add("quantity", "must be at least 1, not " + std::to_string(quantity));
  }
};
DEPOT_MESSAGE(order, "mw.order", id, quantity)

depot::envelope envelope_of(std::string type, std::string body, std::string key = {}) {
  depot::envelope e;
  e.id = depot::new_envelope_id();
  e.queue = type;
  e.message_type = std::move(type);
  e.body = std::move(body);
  e.key = std::move(key);
  return e;
}

/// Runs the handler of `e`'s queue, behind its chain, with a context of no database.
depot::outgoing_envelopes run(const depot::routing& app, const depot::envelope& e) {
  auto handler = app.instantiate(*app.find_queue(e.queue));
  depot::outgoing_envelopes out;
  depot::context ctx{e, nullptr, app, "mw", out};
  handler->invoke(e, ctx);
  return out;
}

const std::string transfer_body = R"({"from":"a","to":"b","amount":5})";

} // namespace middleware_test

using namespace middleware_test;
using namespace std::chrono_literals;

TEST_CASE("the chain is ordered by position, then application, queue and handler scope") {
  depot::routing app;
  std::vector<std::string> trace;
  auto mark = [&](std::string name) {
    return depot::before(
      name, [&trace, name](const depot::envelope&, depot::context&) { trace.push_back(name); });
  };
  app.handle<transfer>([&](const transfer&, depot::context&) { trace.push_back("handler"); })
    .use(mark("handler's").at(depot::stage::logging));
  app.queue("mw.transfer").use(mark("queue's").at(depot::stage::logging));
  app.use(mark("application's"));
  app.use(mark("application's early").at(depot::stage::logging));
  app.use(mark("outermost").at(depot::stage::tracing));
  // Another handler's and another queue's middleware stay out of this chain.
  app.handle<receipt>([](const receipt&, depot::context&) {}).use(mark("receipt's"));
  app.queue("mw.receipt").use(mark("receipt queue's"));

  run(app, envelope_of("mw.transfer", transfer_body));
  CHECK(trace == std::vector<std::string>{"outermost", "application's early", "queue's",
                                          "handler's", "application's", "handler"});
  auto lines = app.describe_middleware();
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] ==
        "mw.transfer / mw.transfer: outermost (100) > application's early (200) > "
        "queue's (200) > handler's (200) > application's (1000) > handler");
  CHECK(lines[1] ==
        "mw.receipt / mw.receipt: outermost (100) > application's early (200) > "
        "application's (1000) > receipt queue's (1000) > receipt's (1000) > handler");
}

TEST_CASE("before runs ahead of the handler, after only when the handler returned") {
  depot::routing app;
  std::vector<std::string> trace;
  bool fail = false;
  app.handle<transfer>([&](const transfer&, depot::context&) {
    trace.push_back("handler");
    if (fail)
      throw std::runtime_error{"ledger down"};
  });
  app.use(depot::before(
    "check", [&](const depot::envelope&, depot::context&) { trace.push_back("before"); }));
  app.use(depot::after("audit",
                       [&](const depot::envelope&, depot::context&) { trace.push_back("after"); }));
  run(app, envelope_of("mw.transfer", transfer_body));
  CHECK(trace == std::vector<std::string>{"before", "handler", "after"});
  trace.clear();
  fail = true;
  CHECK_THROWS_WITH(run(app, envelope_of("mw.transfer", transfer_body)), "ledger down");
  CHECK(trace == std::vector<std::string>{"before", "handler"});
}

TEST_CASE("middleware that does not call next completes the envelope unhandled") {
  depot::routing app;
  bool ran = false;
  app.handle<transfer>([&](const transfer&, depot::context&) { ran = true; });
  app.use([](const depot::envelope&, depot::context&, const depot::next_step&) {});
  run(app, envelope_of("mw.transfer", transfer_body));
  CHECK_FALSE(ran);
}

TEST_CASE("an authorization check refuses with its reason; the refusal is never retried") {
  depot::routing app;
  int handled = 0;
  app.handle<transfer>([&](const transfer&, depot::context&) { ++handled; })
    .use(depot::authorization([](const depot::envelope& e) {
      return e.header_value(depot::header::principal) == "teller"
               ? depot::access::allow()
               : depot::access::deny("principal '" + e.header_value(depot::header::principal) +
                                     "' may not transfer");
    }));
  auto e = envelope_of("mw.transfer", transfer_body);
  e.headers[depot::header::principal] = "teller";
  run(app, e);
  CHECK(handled == 1);

  e.headers[depot::header::principal] = "guest";
  std::exception_ptr thrown;
  try {
    run(app, e);
  } catch (...) {
    thrown = std::current_exception();
  }
  REQUIRE(thrown);
  CHECK(handled == 1);
  auto retry_forever = depot::error_policy{}.retry_times(100);
  auto d = depot::decide(retry_forever, e, thrown);
  CHECK(d.what == depot::failure_action::dead_letter);
  CHECK(d.bad_input);
  CHECK(d.exception_type == "depot::not_authorized");
  CHECK(d.reason.find("principal 'guest' may not transfer") != std::string::npos);
}

TEST_CASE("validation reports every field error, from a type's rules and from validators") {
  // The type's own rules: every broken one, not only the first.
  CHECK_THROWS_WITH_AS(
    (void)depot::from_json<order>(R"({"id":"","quantity":0})"),
    "mw.order is invalid: id: must not be empty; quantity: must be at least 1, not 0",
    depot::validation_error);

  depot::routing app;
  int handled = 0;
  app.handle<transfer>([&](const transfer&, depot::context&) { ++handled; });
  app.validate<transfer>([](const transfer& t, depot::field_errors& errors) {
    if (t.amount < 1)
      errors.add("amount", "must be positive");
    if (t.from == t.to)
      errors.add("to", "must differ from from");
  });
  const auto bad = R"({"from":"a","to":"a","amount":0})";
  auto expected = "mw.transfer is invalid: amount: must be positive; to: must differ from from";
  // A send refuses it ...
  CHECK_THROWS_WITH_AS((void)app.validate("mw.transfer", bad), expected, depot::validation_error);
  CHECK(app.validate("mw.transfer", transfer_body) == "a");
  // ... and the handler never sees one that got stored.
  CHECK_THROWS_WITH_AS(run(app, envelope_of("mw.transfer", bad)), expected,
                       depot::validation_error);
  CHECK(handled == 0);
  run(app, envelope_of("mw.transfer", transfer_body));
  CHECK(handled == 1);
  CHECK(app.describe_middleware().at(0) == "mw.transfer / mw.transfer: validation (400) > handler");
}

TEST_CASE("a traceparent parses only in its version-00 form") {
  auto t = depot::trace_context::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  REQUIRE(t);
  CHECK(t->trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(t->span_id == "00f067aa0ba902b7");
  CHECK(t->flags == "01");
  CHECK(t->traceparent() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  for (auto bad : {"", "garbage", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                   "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                   "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                   "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"}) {
    CAPTURE(bad);
    CHECK_FALSE(depot::trace_context::parse(bad));
  }
}

TEST_CASE("tracing continues the incoming trace and propagates a span of its own") {
  depot::routing app;
  app.use(depot::tracing(depot::log_level::debug));
  app.handle<transfer>(
    [](const transfer& t, depot::context& ctx) { ctx.send(receipt{t.from}, {.headers = {}}); });
  app.handle<receipt>([](const receipt&, depot::context&) {});

  auto e = envelope_of("mw.transfer", transfer_body);
  e.headers[depot::header::traceparent] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto out = run(app, e);
  REQUIRE(out.inbox.size() == 1);
  auto sent = depot::trace_context::parse(out.inbox[0].header_value(depot::header::traceparent));
  REQUIRE(sent);
  CHECK(sent->trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(sent->span_id != "00f067aa0ba902b7");
  CHECK(sent->flags == "01");

  // Without one (or with an invalid one), the handling starts a trace.
  e.headers[depot::header::traceparent] = "not a traceparent";
  auto first = run(app, e);
  auto second = run(app, e);
  auto a = depot::trace_context::parse(first.inbox.at(0).header_value(depot::header::traceparent));
  auto b = depot::trace_context::parse(second.inbox.at(0).header_value(depot::header::traceparent));
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->trace_id != b->trace_id);
}

namespace {

/// Runs `e` through `app`; returns the time it was deferred to, or 0 when it was handled.
depot::micros deferred_until(const depot::routing& app, depot::envelope& e) {
  try {
    run(app, e);
    return 0;
  } catch (const depot::deferral& d) {
    d.mark(e);
    return d.until;
  }
}

} // namespace

TEST_CASE("a rate limit passes a burst, then defers each excess envelope to its own slot") {
  depot::routing app;
  int handled = 0;
  app.handle<transfer>([&](const transfer&, depot::context&) { ++handled; });
  app.queue("mw.transfer").use(depot::rate_limit_per_key(3, 3s)); // one every second
  auto of = [](std::string from) {
    return envelope_of("mw.transfer", R"({"from":")" + from + R"(","to":"z","amount":1})", from);
  };
  std::vector<depot::envelope> a(6, of("a"));
  auto start = depot::now_micros();
  for (int i = 0; i < 3; ++i)
    CHECK(deferred_until(app, a[i]) == 0);
  std::vector<depot::micros> slots;
  for (int i = 3; i < 6; ++i)
    slots.push_back(deferred_until(app, a[i]));
  CHECK(handled == 3);
  // Each excess envelope got a slot of its own, one interval apart: a backlog drains at the
  // rate, and no envelope is deferred twice.
  CHECK(slots[0] >= start + 900'000);
  CHECK(slots[1] - slots[0] == 1'000'000);
  CHECK(slots[2] - slots[1] == 1'000'000);
  // Another key has a bucket of its own.
  auto b = of("b");
  CHECK(deferred_until(app, b) == 0);
  // A deferred envelope that comes back before its slot is deferred again; one that comes back
  // at its slot (simulated by moving the slot to now) takes the token it reserved.
  CHECK(deferred_until(app, a[3]) != 0);
  a[4].headers["depot-rate-slot"] = fmt::format("0/{}", depot::now_micros());
  CHECK(deferred_until(app, a[4]) == 0);
  CHECK(handled == 5);
  // A reservation long past (an outage) is stale: it takes a token like any other envelope.
  a[5].headers["depot-rate-slot"] = fmt::format("0/{}", depot::now_micros() - 60'000'000);
  CHECK(deferred_until(app, a[5]) != 0);
  // Nor does a reservation made for another attempt count.
  a[2].headers["depot-rate-slot"] = fmt::format("1/{}", depot::now_micros());
  CHECK(deferred_until(app, a[2]) != 0);
  CHECK(handled == 5);
  CHECK(app.describe_middleware().at(0).find("rate limit 3 per 3000ms per key (500)") !=
        std::string::npos);
}
