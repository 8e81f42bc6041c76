// How many batches a node's durable workers handle at once, across all its queues
// (--max-concurrent-batches). A worker takes a slot before it claims and gives it back when its
// batch's transaction has ended, so a worker that waits holds nothing in the database. Workers
// get slots in the order they asked: a queue whose workers ask often cannot keep another's out.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

namespace depot {

class batch_slots {
public:
  explicit batch_slots(int slots) : free_(slots) {}
  batch_slots(const batch_slots&) = delete;
  batch_slots& operator=(const batch_slots&) = delete;

  /// A slot taken; given back when it goes out of scope.
  class held {
  public:
    ~held() { slots_.give_back(); }
    held(const held&) = delete;
    held& operator=(const held&) = delete;

  private:
    friend class batch_slots;
    explicit held(batch_slots& slots) : slots_(slots) {}
    batch_slots& slots_;
  };

  /// Waits until a slot is free and every worker that asked earlier has one.
  [[nodiscard]] held take() {
    std::unique_lock lock{mutex_};
    if (free_ > 0 && waiting_.empty()) {
      --free_;
      return held{*this};
    }
    waiter self;
    waiting_.push_back(&self);
    self.turn.wait(lock, [&] { return self.granted; });
    return held{*this};
  }

  /// Slots free now.
  [[nodiscard]] int free() const {
    std::lock_guard guard{mutex_};
    return free_;
  }

  /// Workers waiting for a slot now.
  [[nodiscard]] std::size_t waiting() const {
    std::lock_guard guard{mutex_};
    return waiting_.size();
  }

private:
  /// A worker waiting in take(), on its own stack.
  struct waiter {
    std::condition_variable turn;
    bool granted = false;
  };

  /// Hands the slot to the first waiter, waking only that one; else frees it.
  void give_back() {
    std::lock_guard guard{mutex_};
    if (waiting_.empty()) {
      ++free_;
      return;
    }
    auto* next = waiting_.front();
    waiting_.pop_front();
    next->granted = true;
    next->turn.notify_one(); // under the lock: the waiter, and its condition, outlive this call
  }

  mutable std::mutex mutex_;
  int free_;
  std::deque<waiter*> waiting_; // in the order they asked
};

} // namespace depot
