// Unit tests of saga declarations and the saga context: no database.
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "depot/runtime/saga.hpp"

namespace saga_test {

struct trip {
  std::string trip_id;
  int legs = 0;
};
DEPOT_MESSAGE(trip, "travel.trip", trip_id, legs)

struct book_trip {
  std::string trip_id;
};
DEPOT_MESSAGE(book_trip, "travel.book-trip", trip_id)
DEPOT_MESSAGE_KEY(book_trip, trip_id)

struct cancel_flight {
  std::string trip_id;
  std::string flight;
};
DEPOT_MESSAGE(cancel_flight, "travel.cancel-flight", trip_id, flight)
DEPOT_MESSAGE_KEY(cancel_flight, trip_id)

struct nowhere {
  std::string trip_id;
};
DEPOT_MESSAGE(nowhere, "travel.nowhere", trip_id)

struct not_a_step {
  std::string trip_id;
};
DEPOT_MESSAGE(not_a_step, "travel.not-a-step", trip_id)
DEPOT_MESSAGE_KEY(not_a_step, trip_id)

void ignore(const cancel_flight&, trip&, depot::saga_context&) {}

} // namespace saga_test

using namespace saga_test;

TEST_CASE("a saga declares its queue, table and internal messages") {
  depot::routing app;
  app.saga<trip>("trip-planner")
    .starts<book_trip>([](const book_trip&, trip&, depot::saga_context&) {})
    .handles<cancel_flight>(ignore)
    .deadline(std::chrono::hours{1});
  const auto* saga = app.find_saga("trip-planner");
  REQUIRE(saga != nullptr);
  CHECK(saga->table == "saga_trip_planner");
  CHECK(saga->state_type == "travel.trip");
  CHECK(saga->starts == std::set<std::string>{"travel.book-trip"});
  CHECK(saga->handled == std::set<std::string>{"travel.book-trip", "travel.cancel-flight"});
  CHECK(saga->deadline == std::chrono::hours{1});
  const auto* queue = app.find_queue("trip-planner");
  REQUIRE(queue != nullptr);
  CHECK(queue->saga == saga);
  for (const auto* type : {"travel.book-trip", "travel.cancel-flight", "trip-planner.deadline",
                           "trip-planner.cancel", "trip-planner.compensated"})
    CHECK(queue->handlers.contains(type));
  // Its internal messages are keyed by the saga id, like its steps.
  CHECK(app.validate("trip-planner.cancel", R"({"saga_id": "t-7", "reason": ""})") == "t-7");
  CHECK(app.validate("travel.cancel-flight", R"({"trip_id": "t-7", "flight": "LH 400"})") == "t-7");
  CHECK(app.route_of("travel.book-trip").name == "trip-planner");
}

TEST_CASE("a saga's steps have error policies of their own, tried before its queue's") {
  depot::routing app;
  auto saga = app.saga<trip>("trip")
                .starts<book_trip>([](const book_trip&, trip&, depot::saga_context&) {})
                .handles<cancel_flight>(ignore);
  saga.policies_of<cancel_flight>().on_exception<std::runtime_error>().retry_times(5);
  saga.queue().on_exception<std::runtime_error>().retry_times(1);
  auto thrown = std::make_exception_ptr(std::runtime_error{"airline down"});
  const auto* step = app.error_policy_for("trip", "travel.cancel-flight", thrown);
  const auto* other = app.error_policy_for("trip", "travel.book-trip", thrown);
  REQUIRE(step != nullptr);
  REQUIRE(other != nullptr);
  CHECK(step != other);
  CHECK(step->describe().find('5') != std::string::npos);
}

TEST_CASE("a saga's name is checked, and its queue keeps it") {
  depot::routing app;
  for (const auto* bad : {"", "Trip", "1trip", "trip planner", "trip.planner"})
    CHECK_THROWS_AS(app.saga<trip>(bad), std::logic_error);
  app.saga<trip>("trip");
  CHECK_THROWS_AS(app.saga<trip>("trip"), std::logic_error);
  CHECK_THROWS_AS(app.queue("trip").on_queue("elsewhere"), std::logic_error);
}

TEST_CASE("saga statuses have names both ways") {
  for (auto s : {depot::saga_status::running, depot::saga_status::completed,
                 depot::saga_status::compensating, depot::saga_status::compensated,
                 depot::saga_status::stuck})
    CHECK(depot::saga_status_from(depot::to_string(s)) == s);
  CHECK_FALSE(depot::saga_status_from("done"));
}

TEST_CASE("the saga context records compensations and timeouts of the saga's own types") {
  depot::routing app;
  app.saga<trip>("trip")
    .starts<book_trip>([](const book_trip&, trip&, depot::saga_context&) {})
    .handles<cancel_flight>(ignore);
  app.handle<not_a_step>([](const not_a_step&, depot::context&) {});
  const auto& saga = *app.find_saga("trip");
  depot::envelope incoming;
  incoming.id = depot::new_envelope_id();
  depot::outgoing_envelopes out;
  depot::context base{incoming, nullptr, app, "travel", out};
  depot::saga_row row;
  row.id = "t-1";
  depot::saga_context ctx{base, saga, row};

  ctx.compensate_with(cancel_flight{"t-1", "LH 400"});
  REQUIRE(ctx.recorded().size() == 1);
  CHECK(ctx.recorded()[0].type == "travel.cancel-flight");
  CHECK(ctx.recorded()[0].key == "t-1");
  // A compensation nothing would handle fails the step that records it, not the compensation.
  CHECK_THROWS_AS(ctx.compensate_with(nowhere{"t-1"}), depot::no_route);
  CHECK(ctx.recorded().size() == 1);

  auto id = ctx.request_timeout<book_trip>(cancel_flight{"t-1", "LH 400"}, std::chrono::minutes{5});
  REQUIRE(row.timeouts.size() == 1);
  CHECK(row.timeouts[0].envelope_id == id);
  CHECK(row.timeouts[0].until == std::vector<std::string>{"travel.book-trip"});
  REQUIRE(out.inbox.size() == 1);
  CHECK(out.inbox[0].status == depot::envelope_status::scheduled);
  CHECK(out.inbox[0].header_value(depot::saga_header::timeout) == "trip");

  // A second timeout of the same type replaces the first, whose envelope is dropped unsent.
  ctx.request_timeout(cancel_flight{"t-1", "LH 401"}, std::chrono::minutes{5});
  CHECK(row.timeouts.size() == 1);
  CHECK(row.timeouts[0].envelope_id != id);
  CHECK(out.inbox.size() == 1);
  ctx.cancel_timeout<cancel_flight>();
  CHECK(row.timeouts.empty());
  CHECK(out.inbox.empty());

  // A timeout goes back to the saga: a type it does not handle cannot be one.
  CHECK_THROWS_AS(ctx.request_timeout(not_a_step{"t-1"}, std::chrono::minutes{1}),
                  std::logic_error);
  CHECK_FALSE(ctx.completing());
  ctx.complete();
  CHECK(ctx.completing());
  ctx.compensate("no seats");
  CHECK(ctx.compensation_asked() == "no seats");
}
