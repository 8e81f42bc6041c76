// When an envelope is handled: exactly once per id, not before its execution time (also across a
// restart), and never after its deliver-by.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "depot/actors/node.hpp"
#include "depot/runtime/routing.hpp"
#include "fixture.hpp"

using namespace depot_it;

namespace {

struct note {
  std::string text;
};
DEPOT_MESSAGE(note, "it.note", text)

struct trigger {
  std::string tag;
};
DEPOT_MESSAGE(trigger, "it.trigger", tag)

struct reminder {
  std::string tag;
};
DEPOT_MESSAGE(reminder, "it.reminder", tag)

const std::string note_queue{depot::type_name_of<note>()};

/// A note handler that counts its calls and records each note in `effects`.
void record_notes(depot::routing& app, const test_schema& s, std::atomic<int>& calls) {
  app.handle<note>([&calls, effects = s.table("effects")](const note& m, depot::context& ctx) {
    ++calls;
    record_effect(ctx, effects, m.text);
  });
}

} // namespace

TEST_CASE(
  "a deduplicated envelope inserted twice is handled once, also when it comes again after it "
  "was handled") {
  test_schema s;
  create_effects_table(s);
  std::atomic<int> calls{0};
  depot::routing app;
  record_notes(app, s, calls);
  depot::node node{app, s.node_config()};
  node.start();
  test_store store{s.store_config()};

  auto e = make_envelope(note_queue, note_queue, R"({"text": "once"})");
  e.deduplicated = true; // as a transport's redelivery would be
  CHECK(store.inbox.insert({e}) == 1);
  CHECK(store.inbox.insert({e}) == 0);
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }));
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM incoming") == 0; }));

  // Handled, but within the dedup window: still a duplicate, also inside a batch with a new id.
  CHECK(store.inbox.insert({e}) == 0);
  auto fresh = make_envelope(note_queue, note_queue, R"({"text": "fresh"})");
  CHECK(store.inbox.insert({e, fresh}) == 1);

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 2; }));
  REQUIRE(node.wait_idle(10s));
  CHECK(s.number("SELECT count(*) FROM effects WHERE envelope_id = '" + e.id + "'") == 1);
  CHECK(calls == 2);
}

TEST_CASE(
  "a worker that has claimed only envelopes without keys takes a key's lock when one with a key "
  "comes") {
  test_schema s;
  create_effects_table(s);
  std::atomic<int> calls{0};
  depot::routing app;
  record_notes(app, s, calls);
  auto settings = s.node_config();
  settings.concurrency = 1;
  depot::node node{app, settings};
  node.start();
  test_store store{s.store_config()};
  auto note_of = [](const std::string& text, const std::string& key) {
    auto e = make_envelope(note_queue, note_queue, R"({"text": ")" + text + R"("})");
    e.key = key;
    return e;
  };
  REQUIRE(store.inbox.insert({note_of("plain", "")}) == 1);
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }));

  // Another transaction holds key "a": its envelope waits, the one after it goes by.
  const auto key_lock = "hashtextextended('" + note_queue + "/a', 0)";
  s.exec("SELECT pg_advisory_lock(" + key_lock + ")");
  auto keyed = note_of("keyed", "a");
  REQUIRE(store.inbox.insert({keyed, note_of("after", "")}) == 2);
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 2; }));
  std::this_thread::sleep_for(200ms); // polls and wake-ups meanwhile
  CHECK(s.number("SELECT count(*) FROM effects WHERE envelope_id = '" + keyed.id + "'") == 0);
  CHECK(s.number("SELECT count(*) FROM incoming") == 1);

  s.exec("SELECT pg_advisory_unlock(" + key_lock + ")");
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 3; }));
  CHECK(calls == 3);
  node.stop();
}

TEST_CASE(
  "an envelope of a higher priority that comes in during a backlog is handled within a "
  "few batches") {
  test_schema s;
  std::mutex m;
  std::vector<std::string> order;
  std::atomic<bool> reached{false}, released{false};
  depot::routing app;
  app.handle<note>([&](const note& n, depot::context&) {
    if (n.text == "n3") {
      reached = true;
      for (int i = 0; i < 500 && !released; ++i)
        std::this_thread::sleep_for(10ms);
    }
    std::lock_guard guard{m};
    order.push_back(n.text);
  });
  auto settings = s.node_config();
  settings.batch_size = 1; // every claim continues past the last one's batch
  depot::node node{app, settings};
  test_store store{s.store_config()};
  store.apply_schema();
  std::vector<depot::envelope> backlog;
  for (int i = 0; i < 60; ++i)
    backlog.push_back(
      make_envelope(note_queue, note_queue, R"({"text": "n)" + std::to_string(i) + R"("})"));
  REQUIRE(store.inbox.insert(backlog) == 60);
  node.start();
  REQUIRE(wait_until([&] { return reached.load(); }));
  auto urgent = make_envelope(note_queue, note_queue, R"({"text": "urgent"})");
  urgent.priority = 5;
  REQUIRE(store.inbox.insert({urgent}) == 1);
  released = true;
  REQUIRE(wait_until([&] {
    std::lock_guard guard{m};
    return order.size() == 61;
  }));
  node.stop();
  auto at = std::find(order.begin(), order.end(), "urgent") - order.begin();
  CAPTURE(at);
  // Claims continue past the last batch; every 16th looks at the whole queue.
  CHECK(at <= 4 + 16 + 1);
}

TEST_CASE("a scheduled message is not handled before its time and is handled after it") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  app.handle<reminder>([effects = s.table("effects")](const reminder&, depot::context& ctx) {
    record_effect(ctx, effects, "reminder");
  });
  app.handle<trigger>([effects = s.table("effects")](const trigger& m, depot::context& ctx) {
    record_effect(ctx, effects, "trigger");
    ctx.schedule(reminder{m.tag}, 1s);
  });
  depot::node node{app, s.node_config()};
  node.start();

  SUBCASE("scheduled by the node") {
    node.schedule(reminder{"r"}, 1s);
    CHECK(s.text("SELECT status FROM incoming WHERE message_type = 'it.reminder'") == "scheduled");
    CHECK(s.number("SELECT count(*) FROM effects") == 0);
  }
  SUBCASE("scheduled by the node at a time") {
    auto at = std::chrono::system_clock::now() + 1s;
    node.schedule(reminder{"r"}, at);
    CHECK(s.text("SELECT status FROM incoming WHERE message_type = 'it.reminder'") == "scheduled");
    CHECK(s.number("SELECT (extract(epoch FROM execution_time) * 1000000)::bigint FROM incoming") ==
          std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch()).count());
  }
  SUBCASE("scheduled by a handler") {
    node.send(trigger{"t"});
    REQUIRE(wait_until([&] {
      return s.number("SELECT count(*) FROM incoming WHERE message_type = 'it.reminder'") == 1;
    }));
    // The delay runs from the handling of the trigger.
    CHECK(s.number("SELECT count(*) FROM incoming r, effects t WHERE r.message_type = "
                   "'it.reminder' AND t.tag = 'trigger' AND r.execution_time >= t.handled_at + "
                   "interval '999 milliseconds'") == 1);
  }

  auto due = s.number(
    "SELECT (extract(epoch FROM execution_time) * 1000000)::bigint FROM incoming WHERE "
    "message_type = 'it.reminder'");
  REQUIRE(wait_until(
    [&] { return s.number("SELECT count(*) FROM effects WHERE tag = 'reminder'") == 1; }));
  CHECK(s.number("SELECT (extract(epoch FROM handled_at) * 1000000)::bigint FROM effects WHERE "
                 "tag = 'reminder'") >= due);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0); // handled: gone
}

TEST_CASE("a scheduled message survives a node restart") {
  test_schema s;
  create_effects_table(s);
  // Two incarnations of one application; each records which one handled the reminder.
  auto app_of = [effects = s.table("effects")](depot::routing& app, int incarnation) {
    app.handle<reminder>([=](const reminder& m, depot::context& ctx) {
      record_effect(ctx, effects, m.tag, incarnation);
    });
  };
  depot::routing first_app, second_app;
  app_of(first_app, 1);
  app_of(second_app, 2);

  {
    depot::node first{first_app, s.node_config()};
    first.start();
    first.schedule(reminder{"r"}, 2s);
    first.stop();
  }
  // The premise: the first node was gone before the reminder was due.
  REQUIRE(s.text("SELECT status FROM incoming") == "scheduled");
  REQUIRE(s.number("SELECT count(*) FROM effects") == 0);

  depot::node second{second_app, s.node_config()};
  second.start();
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }));
  CHECK(s.number("SELECT node FROM effects") == 2);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
}

TEST_CASE("an envelope past its deliver-by is discarded unhandled and counted expired") {
  test_schema s;
  create_effects_table(s);
  test_store store{s.store_config()};
  store.apply_schema();
  auto late = make_envelope(note_queue, note_queue, R"({"text": "late"})");
  late.deliver_by = depot::now_micros() - 1'000'000;
  auto in_time = make_envelope(note_queue, note_queue, R"({"text": "in time"})");
  in_time.deliver_by = depot::now_micros() + 3'600'000'000LL;
  REQUIRE(store.inbox.insert({late, in_time}) == 2);

  std::atomic<int> calls{0};
  depot::routing app;
  record_notes(app, s, calls);
  depot::node node{app, s.node_config()};
  node.start();

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM incoming") == 0; }));
  CHECK(s.text("SELECT string_agg(tag, ',') FROM effects") == "in time");
  CHECK(calls == 1);
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
  CHECK(wait_until([&] { return node.stats().expired == 1 && node.stats().handled == 1; }));
}

TEST_CASE(
  "a node with batch size 1 hands only real envelopes to the pipeline when its queue "
  "runs empty") {
  test_schema s;
  create_effects_table(s);
  std::atomic<int> phantoms{0};
  depot::routing app;
  app.use([&](const depot::envelope& e, depot::context&, const depot::next_step& next) {
    if (e.id.empty())
      ++phantoms;
    next();
  });
  app.handle<note>([effects = s.table("effects")](const note& m, depot::context& ctx) {
    record_effect(ctx, effects, m.text);
  });
  auto config = s.node_config();
  config.batch_size = 1;
  depot::node node{app, config};
  node.start();

  node.send(note{"one"});
  node.send(note{"two"});
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 2; }));
  // A full batch makes the worker claim again at once, and the queue is now empty; it also polls
  // every 50 ms. A bad envelope would show within a few of those claims; none should ever come.
  CHECK_FALSE(wait_until([&] { return phantoms > 0; }, 1s));
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
}

TEST_CASE("a send of fewer envelopes than a batch wakes one worker of the queue, not all of them") {
  test_schema s;
  std::atomic<int> calls{0};
  depot::routing app;
  app.handle<note>([&calls](const note&, depot::context&) { ++calls; });
  auto settings = s.node_config();
  settings.concurrency = 4;
  settings.polling_interval = 1h; // only wake-ups make workers claim
  depot::node node{app, settings};
  node.start();
  // The workers claim as they start (those that get a batch slot), finding nothing.
  REQUIRE(wait_until([&] { return node.stats().claims >= 2; }));
  std::this_thread::sleep_for(300ms);
  const auto before = node.stats();
  for (int i = 0; i < 10; ++i) {
    node.send(note{"n" + std::to_string(i)});
    REQUIRE(wait_until([&] { return calls == i + 1; }));
  }
  REQUIRE(node.wait_idle(10s));
  const auto after = node.stats();
  CAPTURE(after.claims - before.claims);
  // Woken all four times, the others would have claimed nothing 30 times.
  CHECK(after.empty_claims - before.empty_claims <= 2);
  CHECK(after.claims - before.claims <= 12);
  node.stop();
}

TEST_CASE("a node's workers handle at most max-concurrent-batches batches at once, across queues") {
  test_schema s;
  std::atomic<int> calls{0}, running{0}, most{0};
  auto handle = [&] {
    auto now = ++running;
    for (auto seen = most.load(); now > seen && !most.compare_exchange_weak(seen, now);) {}
    std::this_thread::sleep_for(20ms);
    --running;
    ++calls;
  };
  depot::routing app;
  app.handle<note>([&](const note&, depot::context&) { handle(); });
  app.handle<reminder>([&](const reminder&, depot::context&) { handle(); });
  auto settings = s.node_config();
  settings.concurrency = 4; // 8 workers on the two queues
  settings.batch_size = 1;
  settings.max_concurrent_batches = 2;
  depot::node node{app, settings};
  node.start();
  std::vector<note> notes;
  std::vector<reminder> reminders;
  for (int i = 0; i < 16; ++i) {
    notes.push_back({"n" + std::to_string(i)});
    reminders.push_back({"r" + std::to_string(i)});
  }
  node.send_all(notes);
  node.send_all(reminders);
  REQUIRE(wait_until([&] { return calls == 32; }));
  node.stop();
  // Without the bound, the 8 workers would have handled up to 8 batches at once.
  CHECK(most.load() <= 2);
}

TEST_CASE(
  "after a burst, an envelope that comes in before where the claims continued is handled "
  "at once") {
  test_schema s;
  std::mutex m;
  std::vector<std::string> order;
  depot::routing app;
  app.handle<note>([&](const note& n, depot::context&) {
    std::lock_guard guard{m};
    order.push_back(n.text);
  });
  auto settings = s.node_config();
  settings.concurrency = 1;
  settings.batch_size = 2;        // the burst fills batches: the claims continue past them
  settings.polling_interval = 1h; // only wake-ups make the worker claim
  depot::node node{app, settings};
  node.start();
  node.send_all(std::vector<note>{{"n0"}, {"n1"}, {"n2"}, {"n3"}});
  auto handled = [&](std::size_t n) {
    return wait_until([&] {
      std::lock_guard guard{m};
      return order.size() == n;
    });
  };
  REQUIRE(handled(4));
  // A higher priority sorts before where the last claims continued from.
  test_store store{s.store_config()};
  auto urgent = make_envelope(note_queue, note_queue, R"({"text": "urgent"})");
  urgent.priority = 5;
  REQUIRE(store.inbox.insert({urgent}) == 1);
  CHECK(handled(5));
  node.stop();
}
