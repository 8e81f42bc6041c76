// How many batches a node's durable workers handle at once, across all its queues
// (--max-concurrent-batches). A worker takes a slot before it claims and gives it back when it
// has no more to do or another queue needs the slot, so a worker that waits holds nothing in the
// database. The rules, for slots fewer than the workers that want them:
// - A queue has at most one worker waiting: another that wants a slot skips its turn, since the
//   waiting one will claim what the skipped one would have.
// - A worker keeps its slot for its queue's next batch while every queue with a worker waiting
//   has a slot already: the queue's batches stay on one worker and one backend instead of
//   rotating through all its workers.
// - A slot given back goes to the first waiter whose queue has none, else to the first waiter.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

namespace depot {

class batch_slots {
public:
  explicit batch_slots(int slots) : free_(slots) {}
  batch_slots(const batch_slots&) = delete;
  batch_slots& operator=(const batch_slots&) = delete;

  /// A slot taken for a queue; given back when it goes out of scope.
  class held {
  public:
    held(held&& other) noexcept
      : slots_(std::exchange(other.slots_, nullptr)), queue_(other.queue_) {}
    held& operator=(held&&) = delete;
    held(const held&) = delete;
    held& operator=(const held&) = delete;
    ~held() {
      if (slots_ != nullptr)
        slots_->give_back(queue_);
    }

    /// Whether a waiting worker's queue has no slot: then this one should be given back.
    [[nodiscard]] bool wanted_elsewhere() const { return slots_->starving(); }

  private:
    friend class batch_slots;
    held(batch_slots& slots, std::string_view queue) : slots_(&slots), queue_(queue) {}
    batch_slots* slots_;
    std::string_view queue_;
  };

  /// A slot for a worker of `queue` (whose name outlives the slot): at once when one is free and
  /// nobody waits, else after the workers that asked earlier (see the rules above). Nothing when
  /// another worker of `queue` already waits.
  [[nodiscard]] std::optional<held> take(std::string_view queue) {
    std::unique_lock lock{mutex_};
    if (free_ > 0 && waiting_.empty()) {
      --free_;
      ++holding_[queue];
      return held{*this, queue};
    }
    auto same = [&](const waiter* w) { return w->queue == queue; };
    if (std::any_of(waiting_.begin(), waiting_.end(), same))
      return std::nullopt;
    waiter self{queue};
    waiting_.push_back(&self);
    self.turn.wait(lock, [&] { return self.granted; });
    return held{*this, queue};
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
    explicit waiter(std::string_view q) : queue(q) {}
    std::string_view queue;
    std::condition_variable turn;
    bool granted = false;
  };

  [[nodiscard]] bool has_none(std::string_view queue) const {
    auto i = holding_.find(queue);
    return i == holding_.end() || i->second == 0;
  }

  [[nodiscard]] bool starving() const {
    std::lock_guard guard{mutex_};
    return std::any_of(waiting_.begin(), waiting_.end(),
                       [&](const waiter* w) { return has_none(w->queue); });
  }

  /// Hands the slot to the next waiter (see the rules above), waking only that one; else frees
  /// it.
  void give_back(std::string_view queue) {
    std::lock_guard guard{mutex_};
    --holding_[queue];
    if (waiting_.empty()) {
      ++free_;
      return;
    }
    auto next = std::find_if(waiting_.begin(), waiting_.end(),
                             [&](const waiter* w) { return has_none(w->queue); });
    if (next == waiting_.end())
      next = waiting_.begin();
    auto* w = *next;
    waiting_.erase(next);
    ++holding_[w->queue];
    w->granted = true;
    w->turn.notify_one(); // under the lock: the waiter, and its condition, outlive this call
  }

  mutable std::mutex mutex_;
  int free_;
  std::deque<waiter*> waiting_;                          // in the order they asked
  std::map<std::string_view, int, std::less<>> holding_; // slots held per queue
};

} // namespace depot
