// The node's actors. Every actor here blocks on Postgres, so every one is detached (a thread of
// its own); nothing blocking runs on CAF's shared scheduler threads.
// - queue worker: one per worker slot of a queue; its mailbox carries wake-ups (durable queues)
//   or the envelopes themselves (buffered queues); a durable worker polls as a fallback.
// - durability agent: heartbeat, due scheduled envelopes, recovery of dead nodes, cleanup.
// - wake listener: LISTEN/NOTIFY wake-ups from other processes.
#include "depot/actors/node.hpp"

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <unordered_map>

#include <caf/all.hpp>

#include "depot/transports/local.hpp"
#include "depot/persistence/notification_listener.hpp"
#include "depot/runtime/log.hpp"
#include "inbox_processor.hpp"

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
  struct worker {
    caf::actor actor;
    std::shared_ptr<std::atomic<bool>> pending; // a wake-up is on its way: coalesce
  };

  impl(const routing& a, node_settings s) : app(a), settings(std::move(s)) {}

  const routing& app;
  node_settings settings;
  std::unique_ptr<caf::actor_system_config> config;
  std::unique_ptr<caf::actor_system> system;
  std::unique_ptr<message_store> agent_store; // holds the node's advisory lock
  persistence::node_registration self;
  std::unordered_map<std::string, std::vector<worker>> workers; // fixed after start
  std::vector<caf::actor> services;
  std::atomic<std::size_t> round_robin{0};
  bool running = false;

  std::mutex pool_mutex;
  std::vector<std::unique_ptr<message_store>> pool; // connections for callers' sends

  std::mutex replies_mutex;
  std::unordered_map<std::string, std::promise<reply_message>> waiting;

  std::atomic<std::uint64_t> handled{0}, expired{0}, retried{0}, dead{0};

  [[nodiscard]] std::string address() const { return fmt::format("node:{}", self.number); }

  // -- dispatch_sink --------------------------------------------------------------------------

  void wake(const std::vector<std::string>& queues) override {
    std::set<std::string> distinct{queues.begin(), queues.end()};
    for (const auto& q : distinct) {
      auto i = workers.find(q);
      if (i == workers.end())
        continue;
      for (auto& w : i->second)
        if (w.pending && !w.pending->exchange(true))
          caf::anon_send(w.actor, wake_atom::value);
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
      auto& w = i->second[round_robin++ % i->second.size()];
      caf::anon_send(w.actor, std::move(e));
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
  std::shared_ptr<message_store> store;
  std::unique_ptr<inbox_processor> processor;
  std::shared_ptr<std::atomic<bool>> pending;
  std::chrono::milliseconds backoff = min_backoff;
  bool connected = true;
  static inline const char* name = "depot.queue_worker";
};

using worker_actor = caf::stateful_actor<worker_state>;

void on_db_error(worker_actor* self, const db_error& e) {
  auto& st = self->state;
  log(log_level::warning, "queue worker: database {} ({}); retrying in {} ms", to_string(e.kind()),
      e.what(), st.backoff.count());
  if (e.kind() == failure_kind::connection_lost || e.kind() == failure_kind::outcome_unknown) {
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

void drain(worker_actor* self, int batch_size) {
  auto& st = self->state;
  if (!st.connected)
    return;
  try {
    auto n = st.processor->process_batch();
    st.backoff = min_backoff;
    // A full batch means more may wait: continue after what else is in the mailbox.
    if (n >= static_cast<std::size_t>(batch_size) && !st.pending->exchange(true))
      self->send(self, wake_atom::value);
  } catch (const db_error& e) {
    on_db_error(self, e);
  }
}

caf::behavior queue_worker(worker_actor* self, node::impl* node, const queue_definition* queue,
                           std::shared_ptr<message_store> store,
                           std::shared_ptr<std::atomic<bool>> pending) {
  auto& st = self->state;
  st.store = std::move(store);
  st.pending = std::move(pending);
  st.processor = std::make_unique<inbox_processor>(*st.store, node->app, *queue, node->settings,
                                                   node->self.number, *node);
  auto batch = node->settings.batch_size;
  return {
    [=](wake_atom) {
      self->state.pending->store(false);
      if (queue->mode == endpoint_mode::durable)
        drain(self, batch);
    },
    [=](envelope& e) {
      try {
        self->state.processor->process_buffered(e);
      } catch (const db_error& error) {
        log(log_level::warning, "buffered {} {}: database {}; retrying", e.message_type, e.id,
            error.what());
        self->delayed_send(self, self->state.backoff, std::move(e));
        self->state.backoff = next_backoff(self->state.backoff);
      }
    },
    [=](reconnect_atom) {
      auto& s = self->state;
      try {
        s.store->reconnect();
        s.processor->recover();
        s.connected = true;
        s.backoff = min_backoff;
        log(log_level::info, "queue {}: database connection is back", queue->name);
        drain(self, batch);
      } catch (const db_error& e) {
        on_db_error(self, e);
      }
    },
    caf::after(node->settings.polling_interval) >>
      [=] {
        if (queue->mode == endpoint_mode::durable)
          drain(self, batch);
      },
  };
}

// -- durability agent -------------------------------------------------------------------------

struct agent_state {
  bool connected = true;
  micros last_cleanup = 0;
  static inline const char* name = "depot.durability_agent";
};

void agent_tick(caf::stateful_actor<agent_state>* self, node::impl* node) {
  auto& st = self->state;
  auto& store = *node->agent_store;
  const auto& s = node->settings;
  try {
    if (!st.connected) {
      store.reconnect();
      if (!store.lock_node_number(node->self.number))
        log(log_level::error, "node id {} was taken over while the database was unreachable",
            node->self.number);
      st.connected = true;
      log(log_level::info, "durability agent: database connection is back");
    }
    store.heartbeat(node->self, version);
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
    st.connected = store.connected();
  }
}

caf::behavior durability_agent(caf::stateful_actor<agent_state>* self, node::impl* node) {
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      agent_tick(self, node);
      self->delayed_send(self, node->settings.heartbeat_interval, tick_atom::value);
    },
  };
}

// -- wake listener ----------------------------------------------------------------------------

struct listener_state {
  std::unique_ptr<persistence::notification_listener> listener;
  static inline const char* name = "depot.wake_listener";
};

caf::behavior wake_listener(caf::stateful_actor<listener_state>* self, node::impl* node) {
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

void node::start() {
  auto& d = *impl_;
  if (d.running)
    return;
  const auto& s = d.settings;
  try {
    d.agent_store = std::make_unique<message_store>(store_settings_of(s));
    if (s.auto_provision) {
      d.agent_store->apply_schema();
    } else if (auto v = d.agent_store->schema_version(); v != message_store::latest_schema_version()) {
      throw startup_error{fmt::format("schema '{}' is at version {}, this node needs {}: run "
                                      "`db apply` or enable auto-provision",
                                      s.schema, v, message_store::latest_schema_version())};
    }
    d.self = d.agent_store->register_node(s.node_id, "", version);
    std::vector<std::shared_ptr<message_store>> stores;
    for (const auto& q : d.app.queues())
      for (int i = 0; i < s.concurrency_of(q.name, q.concurrency); ++i)
        stores.push_back(std::make_shared<message_store>(store_settings_of(s)));
    d.config = std::make_unique<caf::actor_system_config>();
    d.system = std::make_unique<caf::actor_system>(*d.config);
    auto next_store = stores.begin();
    for (const auto& q : d.app.queues()) {
      auto& slots = d.workers[q.name];
      for (int i = 0; i < s.concurrency_of(q.name, q.concurrency); ++i) {
        auto pending = std::make_shared<std::atomic<bool>>(false);
        auto a = d.system->spawn<caf::detached>(queue_worker, &d, &q, *next_store++, pending);
        slots.push_back({a, pending});
      }
    }
    d.services.push_back(d.system->spawn<caf::detached>(durability_agent, &d));
    d.services.push_back(d.system->spawn<caf::detached>(wake_listener, &d));
  } catch (const db_error& e) {
    throw startup_error{e.what()};
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
  for (auto& [name, slots] : d.workers)
    for (auto& w : slots)
      caf::anon_send_exit(w.actor, caf::exit_reason::user_shutdown);
  for (auto& a : d.services)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  d.system->await_all_actors_done();
  d.workers.clear();
  d.services.clear();
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
