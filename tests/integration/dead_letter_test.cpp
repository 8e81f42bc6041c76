// Dead letters as operators use them: filters, replay back to the inbox (once), purge.
#include <doctest/doctest.h>

#include <algorithm>

#include <fmt/format.h>

#include "depot/persistence/unit_of_work.hpp"
#include "fixture.hpp"

using namespace depot_it;
using depot::persistence::dead_letter_filter;
using depot::persistence::unit_of_work;

namespace {

/// Stores `e` as a dead letter that failed with `exception`.
void bury(test_store& store, const depot::envelope& e, const std::string& exception) {
  unit_of_work uow{store.conn};
  store.dead_letters.add(e, exception, "it failed");
  uow.commit();
}

std::vector<std::string> ids_of(const std::vector<depot::persistence::dead_letter>& found) {
  std::vector<std::string> ids;
  for (const auto& d : found)
    ids.push_back(d.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<std::string> sorted(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

} // namespace

TEST_CASE("dead letters keep what a replay needs and are listed by filter, latest first") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  auto a = make_envelope("it.a", "it.one", "{\"n\":1}");
  a.key = "k-1";
  a.tenant = "t-1";
  a.priority = 3;
  a.attempts = 4;
  a.headers["trace"] = "x";
  auto b = make_envelope("it.b", "it.two", "{\"n\":2}");
  auto c = make_envelope("it.a", "it.two", "{\"n\":3}");
  bury(store, a, "std::runtime_error");
  bury(store, b, "depot::validation_error");
  bury(store, c, "depot::validation_error");
  s.exec(
    fmt::format("UPDATE dead_letters SET failed_at = now() - interval '2 hours' WHERE id = "
                "'{}'",
                a.id));

  auto all = store.dead_letters.list({});
  REQUIRE(all.size() == 3);
  CHECK(all.back().id == a.id); // the oldest last
  const auto& first = all.back();
  CHECK(first.queue == "it.a");
  CHECK(first.message_type == "it.one");
  CHECK(first.body == "{\"n\":1}");
  CHECK(first.attempts == 5);
  CHECK(first.exception_type == "std::runtime_error");
  CHECK(first.exception_message == "it failed");
  CHECK(first.message_key == "k-1");
  CHECK(first.tenant == "t-1");
  CHECK(first.priority == 3);
  CHECK(first.headers.find("\"trace\"") != std::string::npos);

  dead_letter_filter by_queue;
  by_queue.queue = "it.a";
  CHECK(ids_of(store.dead_letters.list(by_queue)) == sorted({a.id, c.id}));
  dead_letter_filter by_type_and_exception;
  by_type_and_exception.message_type = "it.two";
  by_type_and_exception.exception_type = "depot::validation_error";
  by_type_and_exception.queue = "it.b";
  CHECK(ids_of(store.dead_letters.list(by_type_and_exception)) == sorted({b.id}));
  dead_letter_filter recent;
  recent.since = "1 hour";
  CHECK(ids_of(store.dead_letters.list(recent)) == sorted({b.id, c.id}));
  recent.since = "2020-01-01 00:00";
  CHECK(store.dead_letters.list(recent).size() == 3);
  dead_letter_filter by_id;
  by_id.ids = {c.id, "not-a-uuid"};
  CHECK(ids_of(store.dead_letters.list(by_id)) == sorted({c.id}));
  by_id.ids = {"not-a-uuid"}; // ids asked for, none valid: nothing, never everything
  CHECK(store.dead_letters.list(by_id).empty());
  CHECK(store.dead_letters.find(b.id).has_value());
  CHECK(!store.dead_letters.find("01a23864-fd35-7c30-ab4f-350501191dd0").has_value());
}

TEST_CASE("a replay moves dead letters back as first attempts, once, and lifts their dedup") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  auto waiting = make_envelope("it.q", "it.t", "{\"n\":0}");
  REQUIRE(store.inbox.insert({waiting}) == 1);
  // A deduplicated envelope: its id is remembered, so the inbox would ignore it again.
  auto dead = make_envelope("it.q", "it.t", "{\"n\":1}");
  dead.deduplicated = true;
  dead.key = "k";
  dead.attempts = 2;
  REQUIRE(store.inbox.insert({dead}) == 1);
  {
    unit_of_work uow{store.conn};
    REQUIRE(store.inbox.claim_again("it.q", {dead.id}).size() == 1);
    store.dead_letters.add(dead, "std::runtime_error", "no account");
    uow.commit();
  }
  CHECK(store.inbox.insert({dead}) == 0); // still a duplicate

  dead_letter_filter all;
  std::vector<std::string> replayed;
  {
    unit_of_work uow{store.conn};
    replayed = store.dead_letters.replay(all);
    uow.commit();
  }
  CHECK(replayed == std::vector<std::string>{dead.id});
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
  CHECK(s.number(fmt::format("SELECT count(*) FROM received_ids WHERE id = '{}'", dead.id)) == 0);
  CHECK(s.number(fmt::format("SELECT attempts FROM incoming WHERE id = '{}'", dead.id)) == 0);
  CHECK(s.text(fmt::format("SELECT message_key FROM incoming WHERE id = '{}'", dead.id)) == "k");
  {
    unit_of_work uow{store.conn};
    auto claimed = store.inbox.claim("it.q", 10);
    REQUIRE(claimed.size() == 2);
    CHECK(claimed[0].id == waiting.id); // the replayed one comes after what waited
    CHECK(claimed[1].id == dead.id);
    CHECK(claimed[1].body == "{\"n\":1}");
    uow.commit();
  }
  {
    unit_of_work uow{store.conn};
    CHECK(store.dead_letters.replay(all).empty()); // a second replay finds nothing
    uow.commit();
  }
}

TEST_CASE("a purge deletes the dead letters its filter takes") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  auto a = make_envelope("it.a", "it.t", "{}");
  auto b = make_envelope("it.b", "it.t", "{}");
  bury(store, a, "x");
  bury(store, b, "y");
  dead_letter_filter by_exception;
  by_exception.exception_type = "y";
  CHECK(store.dead_letters.purge(by_exception) == 1);
  CHECK(ids_of(store.dead_letters.list({})) == std::vector<std::string>{a.id});
  CHECK(store.dead_letters.purge({}) == 1);
  CHECK(store.dead_letters.list({}).empty());
}
