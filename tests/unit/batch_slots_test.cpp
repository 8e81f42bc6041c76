// The node's batch slots: never more taken than there are, and given in the order asked for.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
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

} // namespace

TEST_CASE("batch slots are never more held at once than there are") {
  depot::batch_slots slots{2};
  std::atomic<int> holding{0}, most{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 6; ++w)
    workers.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto held = slots.take();
        auto now = ++holding;
        for (auto seen = most.load(); now > seen && !most.compare_exchange_weak(seen, now);) {
        }
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
  std::mutex m;
  std::vector<int> order;
  auto ask = [&](int who) {
    auto held = slots.take();
    std::lock_guard guard{m};
    order.push_back(who);
  };
  std::vector<std::thread> asking;
  {
    auto held = slots.take();
    for (int who = 1; who <= 4; ++who) {
      asking.emplace_back(ask, who);
      REQUIRE(eventually([&] { return slots.waiting() == static_cast<std::size_t>(who); }));
    }
  } // the slot is free
  for (auto& t : asking)
    t.join();
  CHECK(order == std::vector<int>{1, 2, 3, 4});
}
