// Services added to a node: their actors run under the node's supervisor from start to stop,
// see the node through node_context (its number, a store connection, wake-ups), are restarted
// when they fail, and count in the start-up check of the server's connections.
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include <caf/all.hpp>
#include <soci/soci.h>

#include "depot/actors/node.hpp"
#include "depot/actors/service.hpp"
#include "depot/persistence/inbox.hpp"
#include "fixture.hpp"

using namespace depot_it;

namespace {

struct job {
  std::string tag;
};
DEPOT_MESSAGE(job, "it.job", tag)

using probe_atom = caf::atom_constant<caf::atom("probe")>;

/// A service whose one actor, on each start, stores a job for the node's queue through its own
/// store connection and wakes the queue; its first incarnation then fails.
class probe_service final : public depot::service {
public:
  std::atomic<int> starts{0};
  std::atomic<int> seen_number{0};
  std::atomic<bool> stopped_called{false};
  std::size_t needs = 1;

  [[nodiscard]] std::string name() const override { return "probe"; }
  [[nodiscard]] std::size_t connections() const override { return needs; }
  void stopped() override { stopped_called = true; }

  [[nodiscard]] std::vector<depot::supervised> actors(depot::node_context& node) override {
    return {{"probe",
             [this, &node](caf::actor_system& sys) {
               return sys.spawn<caf::detached>([this, &node](caf::event_based_actor* self) {
                 depot::fail_on_exception(self);
                 auto n = ++starts;
                 seen_number = node.number();
                 auto conn = node.connect();
                 auto e = make_envelope("it.job", "it.job", depot::to_json(job{std::to_string(n)}));
                 depot::persistence::inbox{*conn}.insert({e}, node.number());
                 node.wake({"it.job"});
                 self->send(self, probe_atom::value);
                 return caf::behavior{[n](probe_atom) {
                   if (n == 1)
                     throw depot::validation_error{"the probe's first incarnation fails"};
                 }};
               });
             },
             {}}};
  }
};

} // namespace

TEST_CASE(
  "a service added to a node runs its actors under the node's supervisor, restarted "
  "when they fail, and is told when the node stops") {
  test_schema s;
  create_effects_table(s);
  auto effects = s.table("effects");
  depot::routing app;
  app.handle<job>([&](const job& j, depot::context& ctx) { record_effect(ctx, effects, j.tag); });
  auto probe = std::make_unique<probe_service>();
  auto& p = *probe;
  depot::node node{app, s.node_config()};
  node.add_service(std::move(probe));
  node.start();
  // The first incarnation stored job 1 and failed; the supervisor started a second: job 2.
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 2; }));
  CHECK(p.starts == 2);
  CHECK(p.seen_number == node.number());
  CHECK(s.number("SELECT count(*) FROM effects WHERE tag IN ('1', '2')") == 2);
  CHECK_FALSE(p.stopped_called);
  node.stop();
  CHECK(p.stopped_called);
}

TEST_CASE("a service's connections count in the start-up check of the server's budget") {
  test_schema s;
  depot::routing app;
  app.handle<job>([](const job&, depot::context&) {});
  auto probe = std::make_unique<probe_service>();
  probe->needs = 100'000;
  depot::node node{app, s.node_config()};
  node.add_service(std::move(probe));
  CHECK_THROWS_WITH_AS(node.start(), doctest::Contains("100000 probe"), depot::startup_error);
  CHECK(s.number("SELECT count(*) FROM nodes") == 0);
}
