// A node binary for the supervision system test: its one queue is served by a handler actor
// whose constructor fails the first FLAKY_CONSTRUCTOR_FAILURES times in a process (default 0),
// as an actor that cannot open what it needs would. Everything else is a depot node as users
// build one: the same CLI, a real Postgres, real worker restarts.
#include <atomic>
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

} // namespace flaky

int main(int argc, char** argv) {
  depot::routing app;
  app.handler_actor<flaky::ledger, flaky::ping>("flaky.ping");
  depot::cli cli{"flaky", app};
  return cli.run(argc, argv);
}
