// The queue worker actor and the service that lays out, wakes and feeds the workers.
#include "queue_workers.hpp"

#include <map>
#include <optional>
#include <set>

#include <caf/all.hpp>
#include <fmt/format.h>

#include "depot/runtime/log.hpp"
#include "periodic.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(depot::envelope)

namespace depot {

using persistence::db_error;
using persistence::failure_kind;

namespace {

using wake_atom = caf::atom_constant<caf::atom("wake")>;
using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;

struct worker_state {
  std::unique_ptr<persistence::connection> conn;
  std::unique_ptr<inbox_processor> processor;
  std::shared_ptr<batch_slots> batches;        // outlives batch_slot, which gives back into it
  std::optional<batch_slots::held> batch_slot; // kept for the queue's next batch
  std::chrono::milliseconds backoff = min_backoff;
  bool connected = false;
  static inline const char* name = "depot.queue_worker";
};

using worker_actor = caf::stateful_actor<worker_state>;

/// What a worker needs: its slot, the node, and where committed work goes.
struct worker_env {
  queue_workers::slot* slot;
  node_context* node;
  dispatch_sink* sink;
};

void on_db_error(worker_actor* self, const db_error& e) {
  auto& st = self->state;
  log(log_level::warning, "queue worker: database {} ({}); retrying in {} ms", to_string(e.kind()),
      e.what(), st.backoff.count());
  // The batch's transaction rolled back (or died with the connection): nothing is held.
  if (!st.processor || e.kind() == failure_kind::connection_lost ||
      e.kind() == failure_kind::outcome_unknown) {
    st.connected = false;
    self->delayed_send(self, st.backoff, reconnect_atom::value);
  } else {
    self->delayed_send(self, st.backoff, wake_atom::value);
  }
  st.batch_slot.reset(); // nobody waits on a backoff
  st.backoff = next_backoff(st.backoff);
}

void drain(worker_actor* self, queue_workers::slot* slot, int batch_size) {
  auto& st = self->state;
  if (!st.connected)
    return;
  struct busy_while_draining {
    explicit busy_while_draining(std::atomic<bool>& b) : busy(b) { busy = true; }
    ~busy_while_draining() { busy = false; }
    std::atomic<bool>& busy;
  } busy{slot->busy};
  try {
    // The batch's transaction runs in one of the node's batch slots (max-concurrent-batches).
    if (!st.batch_slot) {
      auto taken = st.batches->take(slot->queue->name);
      if (!taken)
        return; // a sibling waits for a slot: it claims what this one would have
      st.batch_slot.emplace(std::move(*taken));
    }
    auto n = st.processor->process_batch();
    st.backoff = min_backoff;
    // A full batch, or one with keys (see may_have_left_more), means more may wait: continue
    // after what else is in the mailbox, keeping the slot unless a queue without one waits.
    bool more = n >= static_cast<std::size_t>(batch_size) || st.processor->may_have_left_more();
    if (!more || st.batch_slot->wanted_elsewhere())
      st.batch_slot.reset();
    if (more && !slot->pending.exchange(true))
      self->send(self, wake_atom::value);
  } catch (const db_error& e) {
    on_db_error(self, e);
  }
}

// (Re)connects and drains.
// The first connect also makes the queue's handler (a handler actor's constructor may throw:
// that is a failure of this worker, which its supervisor restarts).
void connect(worker_actor* self, const worker_env& env) {
  auto& st = self->state;
  auto* slot = env.slot;
  const auto& settings = env.node->settings();
  try {
    if (!st.conn)
      st.conn = slot->first_connection ? std::move(slot->first_connection) : env.node->connect();
    else
      st.conn->reconnect();
    if (!st.processor)
      st.processor = std::make_unique<inbox_processor>(*st.conn, env.node->app(), *slot->queue,
                                                       settings, env.node->number(), *env.sink,
                                                       *slot->frontier, slot->breakers);
    if (!st.connected && st.backoff > min_backoff)
      log(log_level::info, "{}: database connection is back", slot->label);
    st.connected = true;
    st.backoff = min_backoff;
    drain(self, slot, settings.batch_size);
  } catch (const db_error& e) {
    on_db_error(self, e);
  }
}

caf::behavior queue_worker(worker_actor* self, worker_env env) {
  fail_on_exception(self); // nothing to give back: an open batch rolls back as it unwinds
  auto* slot = env.slot;
  // Published before the flag is cleared: a wake-up that sets the flag from now on reaches this
  // incarnation, and one that set it earlier went to a predecessor (or nowhere), but the drain
  // after connecting sees what it announced. The other order could leave the flag set with no
  // wake-up on its way, and every later one coalesced into it until the polling interval.
  {
    std::lock_guard guard{slot->mutex};
    slot->actor = caf::actor_cast<caf::actor>(self);
  }
  slot->pending = false;
  self->state.batches = slot->batches;
  self->send(self, reconnect_atom::value);
  const auto& settings = env.node->settings();
  auto batch = settings.batch_size;
  auto durable = slot->queue->mode == endpoint_mode::durable;
  return {
    [=](wake_atom) {
      slot->pending = false;
      if (durable)
        drain(self, slot, batch);
    },
    [=](envelope& e) {
      auto& st = self->state;
      try {
        if (!st.connected)
          throw db_error{failure_kind::connection_lost, "", "not connected"};
        st.processor->process_buffered(e);
      } catch (const db_error& error) {
        log(log_level::warning, "buffered {} {}: database {}; retrying", e.message_type, e.id,
            error.what());
        self->delayed_send(self, st.backoff, std::move(e));
        st.backoff = next_backoff(st.backoff);
      }
    },
    [=](reconnect_atom) { connect(self, env); },
    caf::after(settings.polling_interval) >>
      [=] {
        // A wake-up sent while this worker was being replaced went to the old incarnation:
        // its flag is cleared here, so a lost wake-up costs one polling interval at most.
        slot->pending = false;
        if (durable)
          drain(self, slot, batch);
      },
  };
}

} // namespace

caf::actor queue_workers::slot::current() {
  std::lock_guard guard{mutex};
  return actor;
}

void queue_workers::stopped() {
  by_queue_.clear();
  slots_.clear();
  breakers_.clear();
  frontiers_.clear();
}

void queue_workers::plan(const routing& app, const node_settings& s) {
  stopped(); // a node started again plans afresh
  batch_size_ = std::max(1, s.batch_size);
  batches_ = std::make_shared<batch_slots>(s.concurrent_batches());
  for (const auto& [name, n] : s.queue_concurrency)
    if (app.find_queue(name) == nullptr)
      throw std::invalid_argument{
        fmt::format("--queue-concurrency names queue '{}', which this "
                    "node does not serve (see describe)",
                    name)};
  for (const auto& name : s.named_queues())
    if (app.find_queue(name) == nullptr)
      throw std::invalid_argument{
        fmt::format("--queues names queue '{}', which the application does not have (see "
                    "describe)",
                    name)};
  for (const auto& q : app.queues()) {
    auto n = s.serves(q.name) ? s.concurrency_of(q.name, q.concurrency) : 0;
    if (n == 0 && s.serves(q.name))
      log(log_level::warning,
          "queue {} has no worker on this node (concurrency 0): its "
          "envelopes wait for another node",
          q.name);
    queue_breakers breakers;
    if (q.breaker && n > 0)
      breakers.queue = &breakers_.emplace_back(*q.breaker, !q.fallbacks.empty());
    for (const auto& [type, settings] : q.handler_breakers)
      if (n > 0)
        breakers.handlers[type] = &breakers_.emplace_back(settings, q.fallbacks.contains(type));
    auto* frontier = n > 0 ? &frontiers_.emplace_back() : nullptr;
    for (int i = 1; i <= n; ++i) {
      auto& slot = slots_.emplace_back();
      slot.label = fmt::format("queue worker {}#{}", q.name, i);
      slot.queue = &q;
      slot.breakers = breakers;
      slot.frontier = frontier;
      slot.batches = batches_;
      by_queue_[q.name].push_back(&slot);
    }
  }
}

std::vector<supervised> queue_workers::actors(node_context& node) {
  std::vector<supervised> result;
  for (auto& slot : slots_) {
    slot.first_connection = node.connect();
    worker_env env{&slot, &node, &sink_};
    result.push_back(
      {slot.label,
       [env](caf::actor_system& sys) { return sys.spawn<caf::detached>(queue_worker, env); },
       {}}); // each incarnation publishes itself (see queue_worker)
  }
  return result;
}

void queue_workers::wake(const std::vector<std::string>& queues) {
  std::set<std::string> distinct{queues.begin(), queues.end()};
  for (const auto& q : distinct) {
    auto i = by_queue_.find(q);
    if (i == by_queue_.end())
      continue;
    for (auto* w : i->second)
      if (!w->pending.exchange(true))
        caf::anon_send(w->current(), wake_atom::value);
  }
}

void queue_workers::wake_for(const std::vector<std::string>& queues) {
  std::map<std::string_view, std::size_t> ready;
  for (const auto& q : queues)
    ++ready[q];
  for (const auto& [q, n] : ready) {
    auto i = by_queue_.find(std::string{q});
    if (i == by_queue_.end())
      continue;
    const auto& workers = i->second;
    auto wanted = (n + static_cast<std::size_t>(batch_size_) - 1) / batch_size_;
    for (auto* w : workers)
      if (wanted > 0 && w->pending)
        --wanted;
    for (bool busy : {false, true})
      for (auto* w : workers)
        if (wanted > 0 && w->busy == busy && !w->pending.exchange(true)) {
          caf::anon_send(w->current(), wake_atom::value);
          --wanted;
        }
  }
}

void queue_workers::deliver_buffered(std::vector<envelope> envelopes) {
  for (auto& e : envelopes) {
    auto i = by_queue_.find(e.queue);
    if (i == by_queue_.end() || i->second.empty()) {
      log(log_level::warning, "buffered {} {} dropped: queue {} has no worker on this node",
          e.message_type, e.id, e.queue);
      continue;
    }
    auto* w = i->second[round_robin_++ % i->second.size()];
    caf::anon_send(w->current(), std::move(e));
  }
}

} // namespace depot
