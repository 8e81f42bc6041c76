// A node binary for the system tests of failures. Queue flaky.ping is served by a handler actor
// whose constructor fails the first FLAKY_CONSTRUCTOR_FAILURES times in a process (default 0),
// as an actor that cannot open what it needs would. Queue flaky.job fails the first two attempts
// of each job and records the third in flaky_done; its error policy retries after 2 s, then
// after 300 ms. Queue flaky.order records orders in flaky_orders behind middleware: tracing and
// a handling log for every handler, authorization (principal "clerk" only) and a rate limit of
// 2 orders per second per customer, and a circuit breaker of its own. Everything else is a depot
// node as users build one: the same CLI, a real Postgres, real worker restarts.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <depot/depot.hpp>

namespace flaky {

struct ping {
  std::string tag;
};
DEPOT_MESSAGE(ping, "flaky.ping", tag)

std::atomic<long> failures_left{[] {
  const char* v = std::getenv("FLAKY_CONSTRUCTOR_FAILURES");
  return v ? std::atol(v) : 0L;
}()};

struct ledger {
  ledger() {
    if (failures_left.fetch_sub(1) > 0)
      throw std::runtime_error{"cannot open the ledger"};
  }
  void handle(const ping&, depot::context&) {}
};

struct job {
  std::string tag;
};
DEPOT_MESSAGE(job, "flaky.job", tag)

void handle_job(const job& j, depot::context& ctx) {
  const auto& e = ctx.incoming();
  if (e.attempts < 2)
    throw std::runtime_error{"attempt " + std::to_string(e.attempts + 1) + " of " + j.tag +
                             " fails"};
  ctx.db() << "INSERT INTO flaky_done (tag, attempts) VALUES (:t, :a)", soci::use(j.tag),
    soci::use(e.attempts);
}

struct order {
  std::string id;
  std::string customer;
};
DEPOT_MESSAGE(order, "flaky.order", id, customer)
DEPOT_MESSAGE_KEY(order, customer)

void handle_order(const order& o, depot::context& ctx) {
  ctx.db() << "INSERT INTO flaky_orders (id, customer) VALUES (:i, :c)", soci::use(o.id),
    soci::use(o.customer);
}

} // namespace flaky

int main(int argc, char** argv) {
  depot::routing app;
  app.handler_actor<flaky::ledger, flaky::ping>("flaky.ping");
  app.handle<flaky::job>(flaky::handle_job)
    .on_exception<std::runtime_error>()
    .retry_with_cooldown(std::chrono::seconds{2}, std::chrono::milliseconds{300})
    .then_dead_letter();
  app.use(depot::tracing());
  app.use(depot::handling_log());
  app.handle<flaky::order>(flaky::handle_order)
    .use(depot::authorization([](const depot::envelope& e) {
      const auto& who = e.header_value(depot::header::principal);
      return who == "clerk" ? depot::access::allow()
                            : depot::access::deny("principal '" + who + "' may not order");
    }))
    .use(depot::rate_limit_per_key(2, std::chrono::seconds{1}))
    .circuit_breaker({.minimum_handlings = 5,
                      .failure_ratio = 0.5,
                      .window = std::chrono::seconds{10},
                      .pause = std::chrono::seconds{5}});
  depot::cli cli{"flaky", app};
  cli.on_db_apply([](soci::session& db) {
    db << "CREATE TABLE IF NOT EXISTS flaky_done (tag text NOT NULL, attempts integer NOT NULL, "
          "done_at timestamptz NOT NULL DEFAULT now())";
    db << "CREATE TABLE IF NOT EXISTS flaky_orders (id text PRIMARY KEY, customer text NOT NULL, "
          "done_at timestamptz NOT NULL DEFAULT clock_timestamp())";
  });
  return cli.run(argc, argv);
}
