// The node's batch slots: never more taken than there are; given in the order asked for, first to
// a queue that has none; one waiter per queue; a holder told when another queue needs its slot.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "depot/runtime/batch_slots.hpp"

using namespace std::chrono_literals;

namespace {

/// Waits up to 5 s for `done`.
template <class F>
bool eventually(F done) {
  for (int i = 0; i < 500; ++i) {
    if (done())
      return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

/// Threads that each take a slot for their queue and record the order they got it in.
struct askers {
  explicit askers(depot::batch_slots& s) : slots(s) {}

  depot::batch_slots& slots;
  std::mutex m;
  std::vector<std::string> order;
  std::vector<std::thread> threads;

  /// Starts a worker of `queue` and waits until it is in line.
  void ask(const char* queue) {
    auto before = slots.waiting();
    threads.emplace_back([this, queue] {
      auto held = slots.take(queue);
      std::lock_guard guard{m};
      order.emplace_back(queue);
    });
    REQUIRE(eventually([&] { return slots.waiting() == before + 1; }));
  }

  void join() {
    for (auto& t : threads)
      t.join();
  }
};

} // namespace

TEST_CASE("batch slots are never more held at once than there are") {
  depot::batch_slots slots{2};
  std::atomic<int> holding{0}, most{0};
  const std::vector<std::string> queues{"q0", "q1", "q2", "q3", "q4", "q5"};
  std::vector<std::thread> workers;
  for (const auto& q : queues)
    workers.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto held = slots.take(q);
        REQUIRE(held);
        auto now = ++holding;
        for (auto seen = most.load(); now > seen && !most.compare_exchange_weak(seen, now);) {}
        std::this_thread::sleep_for(1ms);
        --holding;
      }
    });
  for (auto& w : workers)
    w.join();
  CHECK(most.load() == 2);
  CHECK(slots.free() == 2);
}

TEST_CASE("a batch slot goes to the worker that asked first") {
  depot::batch_slots slots{1};
  askers line{slots};
  {
    auto held = slots.take("a");
    for (const char* q : {"b", "c", "d", "e"})
      line.ask(q);
  } // the slot is free
  line.join();
  CHECK(line.order == std::vector<std::string>{"b", "c", "d", "e"});
}

TEST_CASE("a queue has one worker in line: another of its workers does not wait") {
  depot::batch_slots slots{1};
  askers line{slots};
  {
    auto held = slots.take("a");
    line.ask("b");
    CHECK_FALSE(slots.take("b")); // at once: the one in line claims for both
    CHECK(slots.waiting() == 1);
  }
  line.join();
  CHECK(line.order == std::vector<std::string>{"b"});
}

TEST_CASE("a slot given back goes first to a waiting queue that has none") {
  depot::batch_slots slots{2};
  askers line{slots};
  {
    auto a = slots.take("a");
    auto b = slots.take("b");
    REQUIRE((a && b));
    line.ask("b"); // b has a slot already
    line.ask("c"); // c has none
    CHECK(a->wanted_elsewhere());
    a.reset();
    REQUIRE(eventually([&] {
      std::lock_guard guard{line.m};
      return !line.order.empty();
    }));
    {
      std::lock_guard guard{line.m};
      CHECK(line.order.front() == "c");
    }
    CHECK_FALSE(b->wanted_elsewhere()); // the b in line waits behind a b that holds one
  }
  line.join();
  CHECK(line.order == std::vector<std::string>{"c", "b"});
}

TEST_CASE("a holder's slot is not wanted while only workers of its own queue wait") {
  depot::batch_slots slots{1};
  askers line{slots};
  {
    auto a = slots.take("a");
    line.ask("a");
    CHECK_FALSE(a->wanted_elsewhere());
  }
  line.join();
}
