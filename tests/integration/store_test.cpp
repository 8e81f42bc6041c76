// The message store on its own: schema and its migration, claim order, claims held by their
// transaction, keys, dedup of remembered ids, counts. No node runs here; the store's statements are
// driven directly.
#include <doctest/doctest.h>

#include <algorithm>
#include <future>
#include <memory>
#include <tuple>

#include <fmt/format.h>
#include <soci/soci.h>

#include "depot/persistence/kafka_offsets.hpp"
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

/// Inserts `e` in a transaction of its own.
void insert(test_store& store, const depot::envelope& e) {
  REQUIRE(store.inbox.insert({e}) == 1);
}

/// Inserts `envelopes` in one transaction, as one send would.
void insert_all(test_store& store, const std::vector<depot::envelope>& envelopes) {
  unit_of_work uow{store.conn};
  REQUIRE(store.inbox.insert(envelopes) == envelopes.size());
  uow.commit();
}

std::vector<std::string> ids_of(const std::vector<depot::envelope>& envelopes) {
  std::vector<std::string> ids;
  for (const auto& e : envelopes)
    ids.push_back(e.id);
  return ids;
}

/// Applies the schema and registers node 1 on `store` (the outbox claims for a node).
void provision(test_store& store) {
  store.apply_schema();
  store.nodes.register_node(1, "", "test");
}

/// Claims up to `limit` envelopes of `queue` and commits, as a handling transaction would.
std::vector<depot::envelope> handle(test_store& store, const std::string& queue, int limit,
                                    bool keyed = false) {
  unit_of_work uow{store.conn};
  auto claimed = store.inbox.claim(queue, limit, keyed);
  uow.commit();
  return claimed;
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

TEST_CASE("db apply migrates a version-2 schema without losing its envelopes") {
  test_schema s;
  test_store store{s.store_config()};
  REQUIRE(store.apply_schema(2) == std::vector<int>{1, 2});
  // Version 2's rows: two waiting (one claimed by node 4), one scheduled, one handled.
  s.exec(
    "INSERT INTO incoming (id, queue, message_type, body, status, owner, received_at, "
    "keep_until, execution_time) VALUES "
    "('00000000-0000-7000-8000-000000000001', 'it.q', 'it.t', '{\"n\":1}', 'incoming', 0, "
    "now() - interval '2 s', NULL, now()), "
    "('00000000-0000-7000-8000-000000000002', 'it.q', 'it.t', '{\"n\":2}', 'incoming', 4, "
    "now() - interval '1 s', NULL, now()), "
    "('00000000-0000-7000-8000-000000000003', 'it.q', 'it.t', '{}', 'scheduled', 0, now(), "
    "NULL, now() + interval '1 hour'), "
    "('00000000-0000-7000-8000-000000000004', 'it.q', 'it.t', '{}', 'handled', 4, now(), "
    "now() + interval '1 day', now())");

  REQUIRE(store.apply_schema() == std::vector<int>{3, 4, 5, 6, 7, 8, 9, 10});
  CHECK(s.number("SELECT count(*) FROM incoming") == 3);
  // The handled id is still a duplicate for the rest of its window.
  CHECK(s.number("SELECT count(*) FROM received_ids") == 1);
  auto again = make_envelope("it.q", "it.t", "{}");
  again.id = "00000000-0000-7000-8000-000000000004";
  again.deduplicated = true;
  CHECK(store.inbox.insert({again}) == 0);
  // The claimed one is ready again, in its old order; new envelopes come after.
  insert(store, make_envelope("it.q", "it.t", "{\"n\":3}"));
  auto claimed = handle(store, "it.q", 10);
  REQUIRE(claimed.size() == 3);
  CHECK(claimed[0].body == "{\"n\":1}");
  CHECK(claimed[1].body == "{\"n\":2}");
  CHECK(claimed[2].body == "{\"n\":3}");
}

TEST_CASE("higher priority envelopes are claimed first, then in the order they were sent") {
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
      auto claimed = handle(store, queue, 1);
      REQUIRE(claimed.size() == 1);
      order.push_back(claimed[0].id);
    }
    CHECK(order == std::vector<std::string>{high.id, middle.id, low.id, low_later.id});
  }
  SUBCASE("a batch comes back best first, then oldest first") {
    auto claimed = handle(store, queue, 10);
    REQUIRE(claimed.size() == 4);
    CHECK(claimed[0].id == high.id);
    CHECK(claimed[0].priority == 5);
    CHECK(claimed[1].id == middle.id);
    CHECK(claimed[2].id == low.id);
    CHECK(claimed[3].id == low_later.id);
  }
}

TEST_CASE("envelopes sent in one transaction are claimed in the order they were sent") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  std::vector<depot::envelope> batch;
  for (int i = 0; i < 300; ++i) {
    batch.push_back(make_envelope("it.bulk", "it.bulk", fmt::format("{{\"n\":{}}}", i)));
    batch.back().id = depot::new_envelope_id(); // ids are not the order
  }
  std::reverse(batch.begin(), batch.end());
  {
    unit_of_work uow{store.conn};
    REQUIRE(store.inbox.insert(batch) == 300);
    uow.commit();
  }
  std::vector<std::string> order;
  for (auto part = handle(store, "it.bulk", 70); !part.empty(); part = handle(store, "it.bulk", 70))
    for (const auto& e : part)
      order.push_back(e.id);
  CHECK(order == ids_of(batch));
}

TEST_CASE("a copied-in envelope comes back exactly as sent: escapes, whitespace, headers, times") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  auto e =
    make_envelope("it.copy", "it.copy", "{\"a\": \"back\\\\slash \\t tab\",\n\t\"b\":\r\n 1}");
  e.headers["note"] = "tab\there, newline\nthere";
  e.deliver_by = depot::now_micros() + 3'600'000'123LL;
  e.priority = 3;
  e.key = "k\t1";
  e.tenant = "t";
  insert(store, e);
  auto claimed = handle(store, "it.copy", 1);
  REQUIRE(claimed.size() == 1);
  CHECK(claimed[0].body == e.body);
  CHECK(claimed[0].headers == e.headers);
  CHECK(claimed[0].deliver_by == e.deliver_by);
  CHECK(claimed[0].priority == 3);
  CHECK(claimed[0].key == e.key);
  CHECK(claimed[0].tenant == "t");
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
  auto claimed = handle(store, queue, 600);
  REQUIRE(claimed.size() == 600);
  CHECK(std::is_sorted(claimed.begin(), claimed.end(),
                       [](const auto& a, const auto& b) { return a.priority > b.priority; }));
  CHECK(claimed.back().body == "{}");
  CHECK(handle(store, queue, 2'147'483'647).size() == 100);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
}

TEST_CASE(
  "a claim belongs to its transaction: other transactions skip what it holds, a rollback makes "
  "it ready again, a commit removes it") {
  test_schema s;
  test_store store{s.store_config()};
  test_store other{s.store_config()};
  provision(store);
  auto first = make_envelope("it.work", "it.work", "{}");
  auto second = make_envelope("it.work", "it.work", "{}");
  insert(store, first);
  insert(store, second);

  {
    unit_of_work uow{store.conn};
    REQUIRE(ids_of(store.inbox.claim("it.work", 1)) == std::vector<std::string>{first.id});
    // Held by an open transaction: another claim takes the next one, never waits.
    CHECK(ids_of(handle(other, "it.work", 10)) == std::vector<std::string>{second.id});
  } // rolled back, as a crash would
  CHECK(s.number("SELECT count(*) FROM incoming") == 1);
  {
    unit_of_work again{other.conn};
    CHECK(ids_of(other.inbox.claim_again("it.work", {first.id, second.id})) ==
          std::vector<std::string>{first.id}); // second is gone: committed
    again.commit();
  }
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
  CHECK(handle(store, "it.work", 10).empty());
}

TEST_CASE(
  "envelopes with the same key are claimed by one transaction at a time, in order; other keys "
  "run beside them") {
  test_schema s;
  test_store store{s.store_config()};
  test_store other{s.store_config()};
  provision(store);
  auto keyed = [](const std::string& key) {
    auto e = make_envelope("it.accounts", "it.debit", "{}");
    e.key = key;
    return e;
  };
  auto a1 = keyed("a"), b1 = keyed("b"), a2 = keyed("a"), none = keyed(""), a3 = keyed("a");
  insert_all(store, {a1, b1, a2, none, a3});
  unit_of_work holding{store.conn};
  REQUIRE(ids_of(store.inbox.claim("it.accounts", 1, true)) == std::vector<std::string>{a1.id});
  // Key "a" is held: its later envelopes wait, whatever the limit.
  CHECK(ids_of(handle(other, "it.accounts", 10, true)) == std::vector<std::string>{b1.id, none.id});
  CHECK(handle(other, "it.accounts", 10, true).empty());
  holding.commit();
  // The key is free again: one batch takes the rest of its envelopes, in order.
  CHECK(ids_of(handle(other, "it.accounts", 10, true)) == std::vector<std::string>{a2.id, a3.id});
}

TEST_CASE("a later envelope of a key is not claimed while an earlier one waits") {
  // What a claim sees when its scan passed a key's first envelope while another transaction
  // held the key, and reaches the next one after that transaction committed: the first is
  // still there, and the next must not overtake it.
  test_schema s;
  test_store store{s.store_config()};
  test_store other{s.store_config()};
  provision(store);
  auto a1 = make_envelope("it.accounts", "it.debit", "{}");
  auto a2 = make_envelope("it.accounts", "it.debit", "{}");
  a1.key = a2.key = "a";
  insert_all(store, {a1, a2});
  unit_of_work passing{store.conn}; // a1 locked, as a concurrent scan holds it, key "a" free
  store.conn.session() << "SELECT id FROM " + s.table("incoming") + " WHERE id = '" + a1.id +
                            "' FOR UPDATE";
  CHECK(handle(other, "it.accounts", 10, true).empty());
  passing.rollback();
  CHECK(ids_of(handle(other, "it.accounts", 10, true)) == std::vector<std::string>{a1.id, a2.id});
}

TEST_CASE("a key's envelopes go in the order stored whatever their priorities") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  auto keyed = [](int priority) {
    auto e = make_envelope("it.accounts", "it.debit", "{}");
    e.key = "a";
    e.priority = priority;
    return e;
  };
  auto low = keyed(0), high = keyed(5), other = make_envelope("it.accounts", "it.debit", "{}");
  other.priority = 9;
  insert_all(store, {low, high, other});
  // `high` comes first in claim order but waits for `low`, stored before it.
  CHECK(ids_of(handle(store, "it.accounts", 10, true)) ==
        std::vector<std::string>{other.id, low.id});
  CHECK(ids_of(handle(store, "it.accounts", 10, true)) == std::vector<std::string>{high.id});
}

TEST_CASE("a claim looks ahead a bounded number of rows past keys other transactions hold") {
  test_schema s;
  test_store store{s.store_config()};
  test_store other{s.store_config()};
  provision(store);
  std::vector<depot::envelope> batch;
  for (int i = 0; i < depot::persistence::inbox::claim_look_ahead; ++i) {
    batch.push_back(make_envelope("it.accounts", "it.debit", "{}"));
    batch.back().key = "busy";
  }
  for (const auto* key : {"free", "other"}) {
    batch.push_back(make_envelope("it.accounts", "it.debit", "{}"));
    batch.back().key = key;
  }
  insert_all(store, batch);
  unit_of_work holding{store.conn};
  REQUIRE(store.inbox.claim("it.accounts", 1, true).size() == 1); // holds key "busy"
  // One row wanted: ten looked at, all of the busy key.
  CHECK(handle(other, "it.accounts", 1, true).empty());
  // Two wanted: twenty looked at, "free" and "other" among them.
  CHECK(ids_of(handle(other, "it.accounts", 2, true)) ==
        std::vector<std::string>{batch[batch.size() - 2].id, batch.back().id});
}

TEST_CASE(
  "with statistics that say the inbox is empty, a claim still looks at each candidate once and "
  "takes no other queue's keys") {
  // What an inbox looks like after a node drained it and autovacuum ran: pages left, no rows
  // counted. The planner then estimates one row per scan; the claim's filter, which takes locks
  // and notes seqs, must still run on its own candidates only, once each.
  test_schema s;
  test_store store{s.store_config()};
  test_store other{s.store_config()};
  provision(store);
  std::vector<depot::envelope> gone(300, make_envelope("it.gone", "it.gone", "{}"));
  for (auto& e : gone)
    e.id = make_envelope("it.gone", "it.gone", "{}").id;
  insert_all(store, gone);
  s.exec("DELETE FROM incoming");
  s.exec("VACUUM (TRUNCATE false, ANALYZE) incoming");
  REQUIRE(s.number("SELECT reltuples::bigint FROM pg_class WHERE oid = '" + s.table("incoming") +
                   "'::regclass") == 0);
  std::vector<depot::envelope> batch;
  for (int i = 0; i < 100; ++i)
    for (const auto* queue : {"it.first", "it.second"}) {
      batch.push_back(make_envelope(queue, "it.debit", "{}"));
      batch.back().key = fmt::format("k{}", i % 20);
    }
  insert_all(store, batch);
  unit_of_work holding{store.conn};
  REQUIRE(store.inbox.claim("it.first", 50, true).size() == 50);
  // The memo holds the seqs of what the claim took, each once.
  std::string memo;
  store.conn.session() << "SELECT current_setting('depot.claimed', true)", soci::into(memo);
  CHECK(std::count(memo.begin(), memo.end(), '|') == 51);
  // The other queue's keys are free: its claim takes a batch beside the first one.
  {
    unit_of_work beside{other.conn};
    CHECK(other.inbox.claim("it.second", 50, true).size() == 50);
  } // rolled back
}

TEST_CASE(
  "a claim that continues from a position takes rows of its priority from its seq on; a whole "
  "claim takes the rest") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  std::vector<depot::envelope> rows;
  for (int i = 0; i < 5; ++i)
    rows.push_back(make_envelope("it.work", "it.work", "{}"));
  insert_all(store, rows);
  auto urgent = make_envelope("it.work", "it.work", "{}");
  urgent.priority = 5;
  insert(store, urgent);
  const depot::persistence::claim_position third{
    0, s.number("SELECT seq FROM incoming WHERE id = '" + rows[2].id + "'")};
  {
    unit_of_work uow{store.conn};
    CHECK(ids_of(store.inbox.claim("it.work", 10, false, third)) ==
          std::vector<std::string>{rows[2].id, rows[3].id, rows[4].id});
    uow.commit();
  }
  CHECK(ids_of(handle(store, "it.work", 10)) ==
        std::vector<std::string>{urgent.id, rows[0].id, rows[1].id});
}

TEST_CASE(
  "a keyed claim that continues from a position keeps each key's order: a row whose key "
  "has a row waiting before the position waits for a whole claim") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  std::vector<depot::envelope> rows;
  for (int i = 0; i < 5; ++i) {
    rows.push_back(make_envelope("it.work", "it.work", "{}"));
    rows.back().key = fmt::format("k{}", i);
  }
  rows[3].key = rows[0].key; // after the position, behind a row of its key before it
  insert_all(store, rows);
  auto urgent = make_envelope("it.work", "it.work", "{}");
  urgent.priority = 5;
  urgent.key = "urgent";
  insert(store, urgent);
  const depot::persistence::claim_position third{
    0, s.number("SELECT seq FROM incoming WHERE id = '" + rows[2].id + "'")};
  {
    unit_of_work uow{store.conn};
    CHECK(ids_of(store.inbox.claim("it.work", 10, true, third)) ==
          std::vector<std::string>{rows[2].id, rows[4].id});
    uow.commit();
  }
  CHECK(ids_of(handle(store, "it.work", 10, true)) ==
        std::vector<std::string>{urgent.id, rows[0].id, rows[1].id, rows[3].id});
}

TEST_CASE("claim returns nothing when nothing qualifies") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  CHECK(handle(store, "it.work", 1).empty());
  auto later = make_envelope("it.work", "it.work", "{}");
  later.status = depot::envelope_status::scheduled;
  later.execution_time = depot::now_micros() + 3'600'000'000LL;
  insert(store, later);
  CHECK(handle(store, "it.work", 1).empty());
  CHECK(store.inbox.claim_again("it.work", {later.id}).empty());
}

TEST_CASE("deduplicated ids are remembered for the dedup window, even once handled") {
  test_schema s;
  auto short_window = s.store_config();
  short_window.dedup_window = 1000; // 1 ms
  test_store store{short_window};
  test_store long_window{s.store_config()}; // the default: a day
  provision(store);

  auto e = make_envelope("it.short", "it.work", "{}");
  e.deduplicated = true;
  auto kept = make_envelope("it.long", "it.work", "{}");
  kept.deduplicated = true;
  auto plain = make_envelope("it.plain", "it.work", "{}");
  insert(store, e);
  insert(long_window, kept);
  insert(store, plain);
  // A plain envelope is new by construction (a fresh id): copied in, a duplicate is an error.
  CHECK_THROWS_AS(store.inbox.insert({plain}), depot::persistence::db_error);
  REQUIRE(handle(store, "it.short", 10).size() == 1);
  REQUIRE(handle(store, "it.long", 10).size() == 1);
  REQUIRE(handle(store, "it.plain", 10).size() == 1);
  CHECK(s.number("SELECT count(*) FROM received_ids") == 2);
  CHECK(long_window.inbox.insert({kept}) == 0); // handled and gone, but remembered

  std::size_t forgotten = 0;
  REQUIRE(wait_until([&] {
    forgotten += store.inbox.forget_received_ids();
    return forgotten >= 1;
  }));
  CHECK(forgotten == 1);
  // Past the window the id is new again; within it, it is still a duplicate.
  CHECK(store.inbox.insert({e}) == 1);
  CHECK(long_window.inbox.insert({kept}) == 0);
  CHECK(s.number("SELECT count(*) FROM received_ids") == 2);
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

  REQUIRE(handle(store, "it.q1", 1).size() == 1);
  {
    unit_of_work uow{store.conn};
    auto failing = store.inbox.claim("it.q2", 1);
    REQUIRE(failing.size() == 1);
    store.dead_letters.add(failing[0], "std::runtime_error", "it failed");
    uow.commit();
  }

  using row = std::tuple<std::string, std::string, std::int64_t>;
  std::vector<row> counts;
  for (const auto& c : store.admin.counts())
    counts.emplace_back(c.queue, c.status, c.count);
  std::sort(counts.begin(), counts.end());
  CHECK(counts == std::vector<row>{
                    {"it.q1", "incoming", 1}, {"it.q1", "scheduled", 1}, {"it.q2", "dead", 1}});
}

TEST_CASE(
  "the outbox: stored with the transaction, read in the order stored, due ones only, removed "
  "once") {
  test_schema s;
  test_store store{s.store_config()};
  provision(store);
  auto outgoing = [](std::string destination) {
    return make_envelope(std::move(destination), "it.event", R"({"n": 1})");
  };
  auto first = outgoing("kafka://orders");
  auto second = outgoing("kafka://orders");
  auto third = outgoing("kafka://orders");
  auto audit = outgoing("kafka://audit");
  auto later = outgoing("kafka://orders");
  later.status = depot::envelope_status::scheduled;
  later.execution_time = depot::now_micros() + 3'600'000'000;
  second.key = "acct-2";
  {
    unit_of_work rolled_back{store.conn};
    store.outbox.insert({outgoing("kafka://orders")});
  }
  {
    unit_of_work uow{store.conn};
    store.outbox.insert({first});
    uow.commit();
  }
  {
    unit_of_work uow{store.conn};
    store.outbox.insert({third, second, audit, later, first}); // first again: skipped
    uow.commit();
  }
  REQUIRE(s.number("SELECT count(*) FROM outgoing") == 5);

  auto batch = store.outbox.pending({"kafka://orders"}, 2);
  REQUIRE(ids_of(batch) == std::vector<std::string>{first.id, third.id}); // as stored
  CHECK(batch[0].queue == "kafka://orders");
  CHECK(batch[0].body == R"({"n": 1})");
  auto all = store.outbox.pending({"kafka://orders", "kafka://audit"}, 10);
  CHECK(ids_of(all) == std::vector<std::string>{first.id, third.id, second.id, audit.id});
  CHECK(all[2].key == "acct-2");

  CHECK(store.outbox.remove(ids_of(batch)) == 2);
  CHECK(store.outbox.remove(ids_of(batch)) == 0);
  store.outbox.count_attempt({second.id});
  auto rest = store.outbox.pending({"kafka://orders"}, 10);
  REQUIRE(ids_of(rest) == std::vector<std::string>{second.id}); // `later` is not due
  CHECK(rest[0].attempts == 1);
  auto backlog = store.outbox.backlog();
  REQUIRE(backlog.size() == 2);
  CHECK(backlog[0].destination == "kafka://audit");
  CHECK(backlog[1].count == 2);
}

TEST_CASE("one connection at a time holds the relay lock; it passes on when that one closes") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  {
    test_store first{s.store_config()};
    REQUIRE(first.outbox.lock_relay());
    CHECK(first.outbox.lock_relay()); // held: taking it again is fine
    CHECK_FALSE(store.outbox.lock_relay());
  }
  CHECK(wait_until([&] { return store.outbox.lock_relay(); }));
}

TEST_CASE("one registered node leads at a time; the lead passes on when its connection closes") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  auto second = store.nodes.register_node(2, "", "test");
  store.nodes.heartbeat(second, "test", {}, {"127.0.0.1:2002", {"it.q"}, {1}});
  {
    test_store first{s.store_config()};
    auto self = first.nodes.register_node(1, "", "test");
    REQUIRE(first.nodes.try_lead());
    CHECK(first.nodes.try_lead()); // held: taking it again is fine
    CHECK_FALSE(store.nodes.try_lead());
    auto members = store.nodes.members();
    REQUIRE(members.size() == 2);
    CHECK(members[0].number == 1);
    CHECK(members[0].leader);
    CHECK_FALSE(members[1].leader);
    CHECK(members[1].presence.uri == "127.0.0.1:2002");
    CHECK(members[1].presence.queues == std::vector<std::string>{"it.q"});
    CHECK(members[1].presence.peers == std::vector<int>{1});
    first.nodes.deregister(self);
  } // its connection closes with it: so does its lock
  CHECK(wait_until([&] { return store.nodes.try_lead(); }));
  auto members = store.nodes.members();
  REQUIRE(members.size() == 1);
  CHECK(members[0].leader);
}

TEST_CASE("Kafka listener offsets kept in Postgres: saved per group, the latest wins") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  depot::persistence::kafka_offsets offsets{store.conn};
  {
    unit_of_work uow{store.conn};
    offsets.save("bank", {{"bank.commands", 0, 10}, {"bank.commands", 1, 4}});
    offsets.save("audit", {{"bank.commands", 0, 2}});
    uow.commit();
  }
  {
    unit_of_work uow{store.conn};
    offsets.save("bank", {{"bank.commands", 0, 12}});
    uow.commit();
  }
  auto bank = offsets.load("bank");
  std::sort(bank.begin(), bank.end(),
            [](const auto& a, const auto& b) { return a.partition < b.partition; });
  REQUIRE(bank.size() == 2);
  CHECK(bank[0].next == 12);
  CHECK(bank[1].next == 4);
  CHECK(offsets.load("audit").size() == 1);
  CHECK(offsets.load("none").empty());
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
