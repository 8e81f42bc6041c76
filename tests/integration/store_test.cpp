// The message store on its own: schema, claim order, ownership checks, dedup-window cleanup,
// counts. No node runs here; the store's statements are driven directly.
#include <doctest/doctest.h>

#include <algorithm>
#include <future>
#include <memory>
#include <tuple>

#include <fmt/format.h>
#include <soci/soci.h>

#include "depot/persistence/retry.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "fixture.hpp"

using depot::persistence::unit_of_work;
using namespace depot_it;

namespace {

std::vector<int> all_versions() {
  std::vector<int> v;
  for (int i = 1; i <= depot::persistence::latest_schema_version(); ++i)
    v.push_back(i);
  return v;
}

/// Inserts `e` in a transaction of its own, so that its received_at is later than earlier ones.
void insert(test_store& store, const depot::envelope& e) {
  REQUIRE(store.inbox.insert({e}) == 1);
}

std::vector<std::string> ids_of(const std::vector<depot::envelope>& envelopes) {
  std::vector<std::string> ids;
  for (const auto& e : envelopes)
    ids.push_back(e.id);
  return ids;
}

/// Applies the schema and registers node 1 on `store`: only registered nodes claim.
void provision(test_store& store) {
  store.apply_schema();
  store.nodes.register_node(1, "", "test");
}

/// Claims the next envelope of `queue` for `owner` and completes its handling, as a node would.
void handle_as(test_store& store, const std::string& queue, int owner) {
  auto claimed = store.inbox.claim(queue, owner, 1);
  REQUIRE(claimed.size() == 1);
  unit_of_work uow{store.conn};
  REQUIRE(store.inbox.begin_handling({claimed[0].id}, owner).size() == 1);
  uow.commit();
}

} // namespace

TEST_CASE("schema apply is idempotent and reports version") {
  test_schema s;
  test_store store{s.store_config()};
  CHECK(store.schema_version() == 0);

  CHECK(store.apply_schema() == all_versions());
  CHECK(store.schema_version() == depot::persistence::latest_schema_version());

  CHECK(store.apply_schema().empty());
  CHECK(store.schema_version() == depot::persistence::latest_schema_version());
  CHECK(s.number("SELECT count(*) FROM schema_version") ==
        depot::persistence::latest_schema_version());
}

TEST_CASE("two stores applying the schema at once apply each version once") {
  test_schema s;
  test_store a{s.store_config()};
  test_store b{s.store_config()};
  auto apply = [](test_store& store) { return store.apply_schema(); };
  auto first = std::async(std::launch::async, apply, std::ref(a));
  auto second = std::async(std::launch::async, apply, std::ref(b));
  auto x = first.get();
  auto y = second.get();
  CHECK(x.size() + y.size() == all_versions().size());
  CHECK((x.empty() || y.empty()));
  CHECK(a.schema_version() == depot::persistence::latest_schema_version());
}

TEST_CASE("higher priority envelopes are claimed first") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  const std::string queue = "it.work";
  auto low = make_envelope(queue, "it.work", "{}");
  auto high = make_envelope(queue, "it.work", "{}");
  high.priority = 5;
  auto middle = make_envelope(queue, "it.work", "{}");
  middle.priority = 1;
  auto low_later = make_envelope(queue, "it.work", "{}");
  for (const auto* e : {&low, &high, &middle, &low_later})
    insert(store, *e);

  SUBCASE("one at a time: the claim query itself picks the best") {
    std::vector<std::string> order;
    for (int i = 0; i < 4; ++i) {
      auto claimed = store.inbox.claim(queue, 1, 1);
      REQUIRE(claimed.size() == 1);
      order.push_back(claimed[0].id);
    }
    CHECK(order == std::vector<std::string>{high.id, middle.id, low.id, low_later.id});
  }
  SUBCASE("a batch comes back best first, then oldest first") {
    auto claimed = store.inbox.claim(queue, 1, 10);
    REQUIRE(claimed.size() == 4);
    CHECK(claimed[0].id == high.id);
    CHECK(claimed[0].priority == 5);
    CHECK(claimed[1].id == middle.id);
    CHECK(claimed[2].id == low.id);
    CHECK(claimed[3].id == low_later.id);
  }
}

TEST_CASE(
  "a claim larger than one fetch returns every row it claimed, best first, and a huge "
  "limit costs no memory") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  const std::string queue = "it.many";
  std::vector<depot::envelope> batch;
  for (int i = 0; i < 700; ++i) {
    batch.push_back(make_envelope(queue, queue, "{}"));
    batch.back().priority = i % 7;
  }
  REQUIRE(store.inbox.insert(batch) == 700);
  auto claimed = store.inbox.claim(queue, 1, 600);
  REQUIRE(claimed.size() == 600);
  CHECK(std::is_sorted(claimed.begin(), claimed.end(),
                       [](const auto& a, const auto& b) { return a.priority > b.priority; }));
  CHECK(claimed.back().body == "{}");
  CHECK(store.inbox.claim(queue, 1, 2'147'483'647).size() == 100);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE owner = 1") == 700);
}

TEST_CASE("begin_handling skips envelopes no longer owned") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  auto five = std::make_unique<test_store>(s.store_config());
  five->nodes.register_node(5, "", "test");
  auto taken = make_envelope("it.work", "it.work", "{}");
  auto still_owned = make_envelope("it.work", "it.work", "{}");
  insert(store, taken);
  insert(store, still_owned);
  REQUIRE(five->inbox.claim("it.work", 5, 10).size() == 2);

  SUBCASE("released by its owner") {
    five->inbox.release({taken.id}, 5);
  }
  SUBCASE("recovered from its dead owner and claimed by another") {
    // Node 5 dies: its advisory lock goes with its connection, and recovery gives both back.
    five.reset();
    std::vector<std::string> recovered; // once Postgres noticed the closed connection
    REQUIRE(
      wait_until([&] { return !(recovered = store.nodes.recover_stale(1'000'000)).empty(); }));
    CHECK(recovered == std::vector<std::string>{"it.work"});
    store.nodes.register_node(6, "", "test");
    REQUIRE(ids_of(store.inbox.claim("it.work", 6, 1)) == std::vector<std::string>{taken.id});
    five = std::make_unique<test_store>(s.store_config()); // node 5 again
    five->nodes.register_node(5, "", "test");
    REQUIRE(ids_of(five->inbox.claim("it.work", 5, 1)) == std::vector<std::string>{still_owned.id});
  }

  unit_of_work uow{five->conn};
  CHECK(five->inbox.begin_handling({taken.id, still_owned.id}, 5) ==
        std::vector<std::string>{still_owned.id});
  uow.commit();
  CHECK(s.text("SELECT status FROM incoming WHERE id = '" + taken.id + "'") == "incoming");
  CHECK(s.text("SELECT status FROM incoming WHERE id = '" + still_owned.id + "'") == "handled");
}

TEST_CASE("only a registered node claims") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  insert(store, make_envelope("it.work", "it.work", "{}"));
  CHECK(
    store.inbox.claim("it.work", 3, 10).empty()); // node 3 has no row: declared dead, or never was
  store.nodes.register_node(3, "", "test");
  CHECK(store.inbox.claim("it.work", 3, 10).size() == 1);
}

TEST_CASE("claim and begin_handling of a single envelope return nothing when nothing qualifies") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  auto show = [](const std::vector<std::string>& ids) {
    return "[\"" + fmt::format("{}", fmt::join(ids, "\", \"")) + "\"]";
  };

  auto from_empty_queue = ids_of(store.inbox.claim("it.work", 1, 1));
  CHECK_MESSAGE(from_empty_queue.empty(),
                "claim(limit 1) on an empty queue returned " << show(from_empty_queue));

  auto e = make_envelope("it.work", "it.work", "{}");
  insert(store, e);
  REQUIRE(ids_of(store.inbox.claim("it.work", 1, 1)) == std::vector<std::string>{e.id});
  auto from_claimed_queue = ids_of(store.inbox.claim("it.work", 1, 1));
  CHECK_MESSAGE(from_claimed_queue.empty(),
                "claim(limit 1) with everything claimed returned " << show(from_claimed_queue));

  unit_of_work uow{store.conn};
  auto locked = store.inbox.begin_handling({e.id}, 2); // owned by 1, not 2
  CHECK_MESSAGE(locked.empty(),
                "begin_handling of one envelope owned by another returned " << show(locked));
  uow.commit();
  CHECK(s.text("SELECT status FROM incoming") == "incoming");
}

TEST_CASE("removal of handled ids after the dedup window") {
  test_schema s;
  auto short_window = s.store_config();
  short_window.dedup_window = 1000; // 1 ms
  test_store store{short_window};
  test_store long_window{s.store_config()}; // the default: a day
  provision(store);

  auto e = make_envelope("it.short", "it.work", "{}");
  auto kept = make_envelope("it.long", "it.work", "{}");
  insert(store, e);
  insert(store, kept);
  handle_as(store, "it.short", 1);
  handle_as(long_window, "it.long", 1);
  REQUIRE(s.number("SELECT count(*) FROM incoming WHERE status = 'handled'") == 2);

  std::size_t removed = 0;
  REQUIRE(wait_until([&] {
    removed += store.inbox.remove_expired_ids();
    return removed >= 1;
  }));
  CHECK(removed == 1);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE id = '" + e.id + "'") == 0);
  CHECK(s.text("SELECT status FROM incoming WHERE id = '" + kept.id + "'") == "handled");
  // Past the window the id is new again; within it, it is still a duplicate.
  CHECK(store.inbox.insert({e}) == 1);
  CHECK(store.inbox.insert({kept}) == 0);
}

TEST_CASE("counts() reports per queue and status, including dead letters as status \"dead\"") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  insert(store, make_envelope("it.q1", "it.work", "{}"));
  insert(store, make_envelope("it.q1", "it.work", "{}"));
  auto later = make_envelope("it.q1", "it.work", "{}");
  later.status = depot::envelope_status::scheduled;
  later.execution_time = depot::now_micros() + 3'600'000'000LL;
  insert(store, later);
  insert(store, make_envelope("it.q2", "it.work", "{}"));

  handle_as(store, "it.q1", 1);
  auto failing = store.inbox.claim("it.q2", 1, 1);
  REQUIRE(failing.size() == 1);
  {
    unit_of_work uow{store.conn};
    REQUIRE(store.inbox.begin_handling({failing[0].id}, 1).size() == 1);
    store.dead_letters.add(failing[0], "std::runtime_error", "it failed");
    uow.commit();
  }

  using row = std::tuple<std::string, std::string, std::int64_t>;
  std::vector<row> counts;
  for (const auto& c : store.admin.counts())
    counts.emplace_back(c.queue, c.status, c.count);
  std::sort(counts.begin(), counts.end());
  CHECK(counts == std::vector<row>{{"it.q1", "handled", 1},
                                   {"it.q1", "incoming", 1},
                                   {"it.q1", "scheduled", 1},
                                   {"it.q2", "dead", 1},
                                   {"it.q2", "handled", 1}});
}

TEST_CASE(
  "the outbox: stored with the transaction, claimed per destination oldest first, "
  "completed once") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  auto outgoing = [](std::string destination) {
    return make_envelope(std::move(destination), "it.event", R"({"n": 1})");
  };
  auto first = outgoing("kafka.orders");
  auto second = outgoing("kafka.orders");
  auto third = outgoing("kafka.orders");
  auto audit = outgoing("kafka.audit");
  {
    unit_of_work rolled_back{store.conn};
    store.outbox.insert({outgoing("kafka.orders")});
  }
  {
    unit_of_work uow{store.conn};
    store.outbox.insert({first});
    uow.commit();
  }
  {
    unit_of_work uow{store.conn};
    store.outbox.insert({second, third, audit, first}); // first again: skipped
    uow.commit();
  }
  REQUIRE(s.number("SELECT count(*) FROM outgoing") == 4);

  auto batch = store.outbox.claim("kafka.orders", 1, 2);
  REQUIRE(batch.size() == 2);
  CHECK(batch[0].id == first.id); // an earlier transaction: stored first
  CHECK(batch[0].queue == "kafka.orders");
  CHECK(batch[0].body == R"({"n": 1})");
  auto rest = store.outbox.claim("kafka.orders", 1, 10);
  REQUIRE(rest.size() == 1);
  CHECK(store.outbox.claim("kafka.orders", 1, 10).empty());
  CHECK(ids_of(store.outbox.claim("kafka.audit", 1, 10)) == std::vector<std::string>{audit.id});

  CHECK(store.outbox.complete(ids_of(batch), 2) == 0); // not node 2's
  CHECK(store.outbox.complete(ids_of(batch), 1) == 2);
  CHECK(store.outbox.complete(ids_of(batch), 1) == 0);

  store.outbox.release(ids_of(rest), 1); // delivery failed: back to the destination
  auto again = store.outbox.claim("kafka.orders", 1, 10);
  REQUIRE(ids_of(again) == ids_of(rest));
  CHECK(again[0].attempts == 1);
  CHECK(s.number("SELECT count(*) FROM outgoing") == 2);
}

TEST_CASE("outgoing envelopes claimed by a dead node go back to their destination") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  auto e = make_envelope("kafka.orders", "it.event", "{}");
  {
    unit_of_work uow{store.conn};
    store.outbox.insert({e});
    uow.commit();
  }
  {
    test_store dying{s.store_config()};
    dying.nodes.register_node(8, "", "test");
    REQUIRE(dying.outbox.claim("kafka.orders", 8, 10).size() == 1);
  }
  REQUIRE(wait_until([&] {
    (void)store.nodes.recover_stale(1'000'000);
    return s.number("SELECT owner FROM outgoing") == 0;
  }));
  store.nodes.register_node(9, "", "test");
  CHECK(ids_of(store.outbox.claim("kafka.orders", 9, 10)) == std::vector<std::string>{e.id});
}

TEST_CASE(
  "a transaction whose connection died is retried on a new connection and stores its "
  "envelopes once") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  auto e = make_envelope("it.work", "it.job", "{}");
  int attempts = 0;
  depot::persistence::retry_transaction(store.conn, [&](depot::persistence::connection& c) {
    ++attempts;
    if (attempts == 1) { // the server ends this connection in the middle of the transaction
      long long pid = 0;
      c.session() << "SELECT pg_backend_pid()", soci::into(pid);
      s.exec("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
    }
    depot::persistence::inbox{c}.insert({e});
    if (attempts == 2) // a conflict with another transaction: retried as well
      throw depot::persistence::db_error{depot::persistence::failure_kind::transient, "40P01",
                                         "deadlock detected"};
  });
  CHECK(attempts == 3);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE id = '" + e.id + "'") == 1);
}

TEST_CASE("a permanent failure is not retried") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  int attempts = 0;
  CHECK_THROWS_AS(depot::persistence::retry_transaction(
                    store.conn,
                    [&](depot::persistence::connection&) {
                      ++attempts;
                      throw depot::persistence::db_error{
                        depot::persistence::failure_kind::permanent, "23514", "check violation"};
                    }),
                  depot::persistence::db_error);
  CHECK(attempts == 1);
}
