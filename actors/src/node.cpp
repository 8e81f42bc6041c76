// The node's actors. Every actor here blocks on Postgres, so every one is detached (a thread of
// its own); nothing blocking runs on CAF's shared scheduler threads. A supervisor (see
// supervisor.hpp) spawns them and restarts one that fails.
// - queue worker: one per worker slot of a queue; its mailbox carries wake-ups (durable queues)
//   or the envelopes themselves (buffered queues); a durable worker polls as a fallback.
// - heartbeat: the node's liveness and health, on the connection holding its advisory lock.
// - durability agent: due scheduled envelopes, recovery of dead nodes, cleanup.
// - wake listener: LISTEN/NOTIFY wake-ups from other processes.
#include "depot/actors/node.hpp"

#include <atomic>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <unordered_map>

#include <caf/all.hpp>

#include "depot/transports/local.hpp"
#include "depot/persistence/notification_listener.hpp"
#include "depot/runtime/log.hpp"
#include "inbox_processor.hpp"
#include "supervisor.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(depot::envelope)

namespace depot {

using persistence::db_error;
using persistence::failure_kind;
using persistence::message_store;

namespace {

using wake_atom = caf::atom_constant<caf::atom("wake")>;
using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using listen_atom = caf::atom_constant<caf::atom("listen")>;

constexpr const char* version = "0.1.0";
constexpr std::chrono::milliseconds min_backoff{100};
constexpr std::chrono::milliseconds max_backoff{5000};

std::chrono::milliseconds next_backoff(std::chrono::milliseconds b) {
  return std::min(b * 2, max_backoff);
}

persistence::store_settings store_settings_of(const node_settings& s) {
  return {s.db, s.schema, std::chrono::duration_cast<std::chrono::microseconds>(s.dedup_window)
                            .count()};
}

} // namespace

struct node::impl final : dispatch_sink {
  /// One worker place of a queue; its actor is restarted in place when it fails.
  struct worker_slot {
    std::string label;
    const queue_definition* queue = nullptr;
    std::atomic<bool> pending{false}; // a wake-up is on its way: coalesce
    std::mutex mutex;                 // guards actor: the supervisor replaces it
    caf::actor actor;
    /// The connection the first incarnation starts with; later ones open their own.
    std::unique_ptr<message_store> first_store;
    /// Claims of the current incarnation; what a failed one could not give back, the next does.
    std::vector<std::string> in_flight;

    [[nodiscard]] caf::actor current() {
      std::lock_guard guard{mutex};
      return actor;
    }
  };

  impl(const routing& a, node_settings s) : app(a), settings(std::move(s)) {}

  const routing& app;
  node_settings settings;
  std::unique_ptr<caf::actor_system_config> config;
  std::unique_ptr<caf::actor_system> system;
  std::unique_ptr<message_store> agent_store; // the heartbeat's: holds the node's advisory lock
  persistence::node_registration self;
  std::deque<worker_slot> slots;                                       // fixed after start
  std::unordered_map<std::string, std::vector<worker_slot*>> workers; // by queue
  caf::actor supervisor;
  std::shared_ptr<failure_record> failures;
  std::atomic<std::size_t> round_robin{0};
  bool running = false;

  std::mutex pool_mutex;
  std::vector<std::unique_ptr<message_store>> pool; // connections for callers' sends

  std::mutex replies_mutex;
  std::unordered_map<std::string, std::promise<reply_message>> waiting;

  std::atomic<std::uint64_t> handled{0}, expired{0}, retried{0}, dead{0};

  [[nodiscard]] std::string address() const { return fmt::format("node:{}", self.number); }

  /// Refuses to start when the server cannot give every worker its connection.
  void check_connection_budget(std::size_t worker_count);
  /// Spawns the supervisor with every worker, the heartbeat, the durability agent and the wake
  /// listener.
  void spawn_actors();

  /// What the node's row says of its health.
  [[nodiscard]] persistence::node_health_row health_row() const {
    auto h = failures ? failures->health() : node_health{};
    return {to_string(h.status), h.reason};
  }

  // -- dispatch_sink --------------------------------------------------------------------------

  void wake(const std::vector<std::string>& queues) override {
    std::set<std::string> distinct{queues.begin(), queues.end()};
    for (const auto& q : distinct) {
      auto i = workers.find(q);
      if (i == workers.end())
        continue;
      for (auto* w : i->second)
        if (!w->pending.exchange(true))
          caf::anon_send(w->current(), wake_atom::value);
    }
  }

  void deliver_buffered(std::vector<envelope> envelopes) override {
    for (auto& e : envelopes) {
      auto i = workers.find(e.queue);
      if (i == workers.end() || i->second.empty()) {
        log(log_level::warning, "buffered {} {} dropped: queue {} has no worker on this node",
            e.message_type, e.id, e.queue);
        continue;
      }
      auto* w = i->second[round_robin++ % i->second.size()];
      caf::anon_send(w->current(), std::move(e));
    }
  }

  void deliver_reply(reply_message reply) override {
    if (reply.reply_to != address()) {
      log(log_level::debug, "reply to {} is not for this node", reply.reply_to);
      return;
    }
    std::lock_guard guard{replies_mutex};
    auto i = waiting.find(reply.request_id);
    if (i == waiting.end())
      return; // the requester gave up
    i->second.set_value(std::move(reply));
    waiting.erase(i);
  }

  void count(std::size_t h, std::size_t e, std::size_t r, std::size_t d) override {
    handled += h;
    expired += e;
    retried += r;
    dead += d;
  }

  // -- store leases for callers' sends ---------------------------------------------------------

  std::unique_ptr<message_store> lease() {
    {
      std::lock_guard guard{pool_mutex};
      if (!pool.empty()) {
        auto s = std::move(pool.back());
        pool.pop_back();
        return s;
      }
    }
    return open_store();
  }

  [[nodiscard]] std::unique_ptr<message_store> open_store() const {
    return std::make_unique<message_store>(store_settings_of(settings));
  }

  void give_back(std::unique_ptr<message_store> s) {
    if (!s->connected())
      return;
    std::lock_guard guard{pool_mutex};
    pool.push_back(std::move(s));
  }
};

namespace {

// -- queue worker -----------------------------------------------------------------------------

struct worker_state {
  std::unique_ptr<message_store> store;
  std::unique_ptr<inbox_processor> processor;
  std::chrono::milliseconds backoff = min_backoff;
  bool connected = false;
  static inline const char* name = "depot.queue_worker";
};

using worker_actor = caf::stateful_actor<worker_state>;

void on_db_error(worker_actor* self, const db_error& e) {
  auto& st = self->state;
  log(log_level::warning, "queue worker: database {} ({}); retrying in {} ms", to_string(e.kind()),
      e.what(), st.backoff.count());
  if (!st.processor || e.kind() == failure_kind::connection_lost ||
      e.kind() == failure_kind::outcome_unknown) {
    st.connected = false;
    self->delayed_send(self, st.backoff, reconnect_atom::value);
  } else {
    try {
      st.processor->recover();
    } catch (const db_error&) {
      // The next attempt or the durability agent releases them.
    }
    self->delayed_send(self, st.backoff, wake_atom::value);
  }
  st.backoff = next_backoff(st.backoff);
}

void drain(worker_actor* self, node::impl::worker_slot* slot, int batch_size) {
  auto& st = self->state;
  if (!st.connected)
    return;
  try {
    auto n = st.processor->process_batch();
    st.backoff = min_backoff;
    // A full batch means more may wait: continue after what else is in the mailbox.
    if (n >= static_cast<std::size_t>(batch_size) && !slot->pending.exchange(true))
      self->send(self, wake_atom::value);
  } catch (const db_error& e) {
    on_db_error(self, e);
  }
}

// (Re)connects, gives back what an earlier incarnation or connection left claimed, and drains.
// The first connect also makes the queue's handler (a handler actor's constructor may throw:
// that is a failure of this worker, which its supervisor restarts).
void connect(worker_actor* self, node::impl* node, node::impl::worker_slot* slot) {
  auto& st = self->state;
  try {
    if (!st.store)
      st.store = slot->first_store ? std::move(slot->first_store) : node->open_store();
    else
      st.store->reconnect();
    if (!st.processor)
      st.processor = std::make_unique<inbox_processor>(*st.store, node->app, *slot->queue,
                                                       node->settings, node->self.number, *node,
                                                       slot->in_flight);
    st.processor->recover();
    if (!st.connected && st.backoff > min_backoff)
      log(log_level::info, "{}: database connection is back", slot->label);
    st.connected = true;
    st.backoff = min_backoff;
    drain(self, slot, node->settings.batch_size);
  } catch (const db_error& e) {
    on_db_error(self, e);
  }
}

caf::behavior queue_worker(worker_actor* self, node::impl* node, node::impl::worker_slot* slot) {
  fail_on_exception(self, [self] {
    if (self->state.processor)
      self->state.processor->recover();
  });
  slot->pending = false;
  self->send(self, reconnect_atom::value);
  auto batch = node->settings.batch_size;
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
    [=](reconnect_atom) { connect(self, node, slot); },
    caf::after(node->settings.polling_interval) >>
      [=] {
        // A wake-up sent while this worker was being replaced went to the old incarnation:
        // its flag is cleared here, so a lost wake-up costs one polling interval at most.
        slot->pending = false;
        if (durable)
          drain(self, slot, batch);
      },
  };
}

// -- heartbeat --------------------------------------------------------------------------------

struct heartbeat_state {
  bool connected = true;
  static inline const char* name = "depot.heartbeat";
};

// On the connection that holds the node's advisory lock, and nothing else: no maintenance work,
// however long, can delay it and make peers think this node died.
void beat(caf::stateful_actor<heartbeat_state>* self, node::impl* node) {
  auto& st = self->state;
  auto& store = *node->agent_store;
  try {
    if (!st.connected) {
      store.reconnect();
      if (!store.lock_node_number(node->self.number))
        log(log_level::error, "node id {} was taken over while the database was unreachable",
            node->self.number);
      st.connected = true;
      log(log_level::info, "heartbeat: database connection is back");
    }
    store.heartbeat(node->self, version, node->health_row());
  } catch (const db_error& e) {
    if (st.connected)
      log(log_level::warning, "heartbeat: database {} ({}); retrying", to_string(e.kind()),
          e.what());
    st.connected = store.connected();
  }
}

// The behavior of an actor that runs `tick(self, node)` now and every heartbeat interval.
template <class State>
caf::behavior every_heartbeat(caf::stateful_actor<State>* self, node::impl* node,
                              void (*tick)(caf::stateful_actor<State>*, node::impl*)) {
  fail_on_exception(self);
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      tick(self, node);
      self->delayed_send(self, node->settings.heartbeat_interval, tick_atom::value);
    },
  };
}

caf::behavior heartbeat(caf::stateful_actor<heartbeat_state>* self, node::impl* node) {
  return every_heartbeat(self, node, beat);
}

// -- durability agent -------------------------------------------------------------------------

struct agent_state {
  std::unique_ptr<message_store> store; // its own: a long cleanup blocks nothing else
  bool connected = true;
  micros last_cleanup = 0;
  static inline const char* name = "depot.durability_agent";
};

void agent_tick(caf::stateful_actor<agent_state>* self, node::impl* node) {
  auto& st = self->state;
  const auto& s = node->settings;
  try {
    if (!st.store) {
      st.store = node->open_store();
    } else if (!st.connected) {
      st.store->reconnect();
      log(log_level::info, "durability agent: database connection is back");
    }
    st.connected = true;
    auto& store = *st.store;
    node->wake(store.promote_due());
    node->wake(store.recover_stale(
      std::chrono::duration_cast<std::chrono::microseconds>(s.stale_after).count()));
    auto now = now_micros();
    auto interval = std::chrono::duration_cast<std::chrono::microseconds>(s.cleanup_interval);
    if (now - st.last_cleanup >= interval.count()) {
      constexpr int chunk = 10000;
      while (store.remove_expired_ids(chunk) == chunk) {
      }
      st.last_cleanup = now;
    }
  } catch (const db_error& e) {
    if (st.connected)
      log(log_level::warning, "durability agent: database {} ({}); retrying",
          to_string(e.kind()), e.what());
    st.connected = st.store && st.store->connected();
  }
}

caf::behavior durability_agent(caf::stateful_actor<agent_state>* self, node::impl* node) {
  return every_heartbeat(self, node, agent_tick);
}

// -- wake listener ----------------------------------------------------------------------------

struct listener_state {
  std::unique_ptr<persistence::notification_listener> listener;
  static inline const char* name = "depot.wake_listener";
};

caf::behavior wake_listener(caf::stateful_actor<listener_state>* self, node::impl* node) {
  fail_on_exception(self);
  self->send(self, listen_atom::value);
  return {
    [=](listen_atom) {
      auto& st = self->state;
      try {
        if (!st.listener)
          st.listener = std::make_unique<persistence::notification_listener>(
            node->settings.db, node->agent_store->notify_channel());
        // Short waits keep the mailbox (and shutdown) responsive.
        for (auto& notice : st.listener->wait(std::chrono::milliseconds{200}))
          if (notice.sender != node->self.number)
            node->wake(notice.queues);
        self->send(self, listen_atom::value);
      } catch (const db_error&) {
        st.listener.reset(); // polling covers the gap
        self->delayed_send(self, max_backoff, listen_atom::value);
      }
    },
  };
}

} // namespace

node::node(const routing& app, node_settings settings)
  : impl_(std::make_unique<impl>(app, std::move(settings))) {
}

node::~node() {
  stop();
}

int node::number() const {
  return impl_->self.number;
}

const node_settings& node::settings() const {
  return impl_->settings;
}

node_stats node::stats() const {
  return {impl_->handled.load(), impl_->expired.load(), impl_->retried.load(),
          impl_->dead.load()};
}

node_health node::health() const {
  return impl_->failures ? impl_->failures->health() : node_health{};
}

const char* to_string(node_health::state s) {
  switch (s) {
    case node_health::state::healthy: return "healthy";
    case node_health::state::unhealthy: return "unhealthy";
    case node_health::state::failed: return "failed";
  }
  return "failed";
}

void node::impl::check_connection_budget(std::size_t worker_count) {
  // Each worker holds a connection; the durability agent and the wake listener one each, sends
  // at least one more. The heartbeat uses the connection that checks this.
  auto needed = static_cast<std::int64_t>(worker_count) + 3;
  auto budget = agent_store->free_connections();
  if (needed > budget.free)
    throw startup_error{fmt::format(
      "this node needs {} database connections besides its first ({} queue worker(s), the "
      "durability agent, the wake listener, one for sends) but the server has {} free (max_connections {}, {} in use): lower "
      "--concurrency or --queue-concurrency, or raise the server's max_connections",
      needed, worker_count, std::max<std::int64_t>(budget.free, 0), budget.max, budget.used)};
}

void node::impl::spawn_actors() {
  std::vector<supervised> actors;
  for (auto& slot : slots)
    actors.push_back({slot.label,
                      [this, p = &slot](caf::actor_system& sys) {
                        return sys.spawn<caf::detached>(queue_worker, this, p);
                      },
                      [p = &slot](const caf::actor& a) {
                        std::lock_guard guard{p->mutex};
                        p->actor = a;
                      }});
  actors.push_back({"heartbeat",
                    [this](caf::actor_system& sys) {
                      return sys.spawn<caf::detached>(heartbeat, this);
                    },
                    {}});
  actors.push_back({"durability agent",
                    [this](caf::actor_system& sys) {
                      return sys.spawn<caf::detached>(durability_agent, this);
                    },
                    {}});
  actors.push_back({"wake listener",
                    [this](caf::actor_system& sys) {
                      return sys.spawn<caf::detached>(wake_listener, this);
                    },
                    {}});
  failures = std::make_shared<failure_record>(settings.max_restarts, settings.restart_window);
  supervisor = spawn_supervisor(*system, std::move(actors), failures);
}

void node::start() {
  auto& d = *impl_;
  if (d.running)
    return;
  const auto& s = d.settings;
  try {
    check(s);
  } catch (const invalid_setting& e) {
    throw startup_error{e.what()};
  }
  bool registered = false;
  // Undoes a start that failed half-way: no node row and no connections are left behind.
  auto undo = [&d, &registered] {
    if (registered) {
      try {
        d.agent_store->deregister(d.self);
      } catch (const db_error&) {
        // The row goes once its heartbeat is stale.
      }
    }
    d.slots.clear();
    d.workers.clear();
    d.agent_store.reset();
  };
  try {
    d.agent_store = d.open_store();
    if (s.auto_provision) {
      d.agent_store->apply_schema();
    } else if (auto v = d.agent_store->schema_version(); v != message_store::latest_schema_version()) {
      throw startup_error{fmt::format("schema '{}' is at version {}, this node needs {}: run "
                                      "`db apply` or enable auto-provision",
                                      s.schema, v, message_store::latest_schema_version())};
    }
    for (const auto& [name, n] : s.queue_concurrency)
      if (d.app.find_queue(name) == nullptr)
        throw startup_error{fmt::format("--queue-concurrency names queue '{}', which this node "
                                        "does not serve (see describe)",
                                        name)};
    for (const auto& q : d.app.queues()) {
      auto n = s.concurrency_of(q.name, q.concurrency);
      if (n == 0)
        log(log_level::warning, "queue {} has no worker on this node (concurrency 0): its "
            "envelopes wait for another node", q.name);
      for (int i = 1; i <= n; ++i) {
        auto& slot = d.slots.emplace_back();
        slot.label = fmt::format("queue worker {}#{}", q.name, i);
        slot.queue = &q;
        d.workers[q.name].push_back(&slot);
      }
    }
    d.check_connection_budget(d.slots.size());
    d.self = d.agent_store->register_node(s.node_id, "", version);
    registered = true;
    for (auto& slot : d.slots)
      slot.first_store = d.open_store();
    d.config = std::make_unique<caf::actor_system_config>();
    d.system = std::make_unique<caf::actor_system>(*d.config);
    d.spawn_actors();
  } catch (const db_error& e) {
    undo();
    throw startup_error{e.what()};
  } catch (...) {
    undo();
    throw;
  }
  d.running = true;
  std::vector<std::string> all;
  for (const auto& q : d.app.queues())
    all.push_back(q.name);
  d.wake(all); // drain what waited while no node ran
  log(log_level::info, "node {} started: {} queue(s), schema {}", d.self.number,
      d.app.queues().size(), s.schema);
}

void node::stop() {
  auto& d = *impl_;
  if (!d.running)
    return;
  d.running = false;
  // The supervisor stops every actor it runs, and restarts none from then on.
  caf::anon_send_exit(d.supervisor, caf::exit_reason::user_shutdown);
  d.system->await_all_actors_done();
  d.workers.clear();
  d.slots.clear();
  d.supervisor = caf::actor{};
  try {
    d.agent_store->deregister(d.self);
  } catch (const db_error& e) {
    log(log_level::warning, "could not deregister node {}: {}", d.self.number, e.what());
  }
  d.system.reset();
  d.config.reset();
  d.agent_store.reset();
  log(log_level::info, "node {} stopped", d.self.number);
}

std::vector<std::string> node::send_bodies(std::string_view type, std::vector<std::string> bodies,
                                           send_options options, micros at, dispatch how) {
  auto& d = *impl_;
  auto store = d.lease();
  sent_envelopes sent;
  try {
    sent = send_durably(*store, d.app, d.settings.service, d.self.number, type, bodies, options,
                        at, how);
  } catch (...) {
    d.give_back(std::move(store));
    throw;
  }
  d.give_back(std::move(store));
  std::vector<std::string> ids, ready;
  for (const auto& e : sent.durable) {
    ids.push_back(e.id);
    if (e.status == envelope_status::incoming)
      ready.push_back(e.queue);
  }
  for (const auto& e : sent.buffered)
    ids.push_back(e.id);
  d.wake(ready);
  d.deliver_buffered(std::move(sent.buffered));
  return ids;
}

reply_message node::request_body(std::string_view type, std::string body,
                                 std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  send_options options;
  options.headers[header::reply_to] = d.address();
  // The id is known only once the envelope exists, so register under a correlation header
  // chosen here and carried as the request's id.
  auto request_id = new_envelope_id();
  options.headers[header::correlation_id] = request_id;
  std::future<reply_message> reply;
  {
    std::lock_guard guard{d.replies_mutex};
    reply = d.waiting[request_id].get_future();
  }
  try {
    send_bodies(type, {std::move(body)}, std::move(options), 0, dispatch::send);
  } catch (...) {
    std::lock_guard guard{d.replies_mutex};
    d.waiting.erase(request_id);
    throw;
  }
  if (reply.wait_for(timeout) != std::future_status::ready) {
    std::lock_guard guard{d.replies_mutex};
    d.waiting.erase(request_id);
    throw request_timeout{fmt::format("no reply to {} within {} ms", type, timeout.count())};
  }
  return reply.get();
}

std::vector<persistence::queue_count> node::counts() {
  auto store = impl_->lease();
  auto result = store->counts();
  impl_->give_back(std::move(store));
  return result;
}

bool node::wait_idle(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto store = impl_->lease();
  bool idle = false;
  while (!(idle = store->pending() == 0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  impl_->give_back(std::move(store));
  return idle;
}

} // namespace depot
