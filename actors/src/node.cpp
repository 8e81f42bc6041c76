// The node: registers in the store, starts its services' actors under one supervisor, and
// stops them. It knows its services only as `service` (queue workers, heartbeat, durability
// agent and wake listener are built in; the application may add more); they know it only as
// `node_context`. Nothing here blocks a CAF scheduler thread: every blocking actor is detached.
#include "depot/actors/node.hpp"

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "cluster.hpp"
#include "depot/actors/service.hpp"
#include "depot/persistence/node_registry.hpp"
#include "depot/persistence/retry.hpp"
#include "depot/persistence/saga_store.hpp"
#include "depot/persistence/schema.hpp"
#include "depot/runtime/log.hpp"
#include "depot/transports/kafka.hpp"
#include "depot/transports/local.hpp"
#include "durability_agent.hpp"
#include "heartbeat.hpp"
#include "queue_workers.hpp"
#include "supervisor.hpp"
#include "wake_listener.hpp"

namespace depot {

using persistence::connection;
using persistence::db_error;

namespace {

constexpr const char* version = "0.1.0";

} // namespace

struct node::impl final : dispatch_sink, node_context {
  impl(const routing& a, node_settings s, caf::actor_system_config* c)
    : app_(a), settings_(std::move(s)), config(c) {}

  const routing& app_;
  node_settings settings_;
  caf::actor_system_config* config; // the caller's, or null for CAF's defaults
  std::unique_ptr<caf::actor_system_config> own_config;
  std::unique_ptr<caf::actor_system> system;
  std::unique_ptr<connection> registration; // holds the node's advisory lock; the heartbeat's
  persistence::node_registration self;
  std::shared_ptr<cluster_view> cluster = std::make_shared<cluster_view>();
  caf::actor node_actor; // published for the peers; not supervised: its failure fails the node
  std::set<std::string, std::less<>> served; // the queues this node serves (set at start)
  bool cluster_loaded = false;               // load_cluster_modules ran on config
  queue_workers workers{*this};
  heartbeat beat{registration, self, version, cluster};
  durability_agent agent;
  wake_listener listener;
  std::vector<std::unique_ptr<service>> services; // the application's
  /// transport → its relay's wake-up; set while services make their actors, read-only after
  std::map<std::string, std::function<void()>, std::less<>> outbox_wakers;
  caf::actor supervisor;
  std::shared_ptr<failure_record> failures;
  bool running = false;
  bool kafka_added = false; // the Kafka transport is among services

  std::mutex pool_mutex;
  std::vector<std::unique_ptr<connection>> pool; // connections for callers' sends

  std::mutex replies_mutex;
  std::unordered_map<std::string, std::promise<reply_message>> waiting;

  std::atomic<std::uint64_t> handled{0}, expired{0}, retried{0}, dead{0}, discarded{0}, deferred{0},
    claims{0}, empty_claims{0};

  [[nodiscard]] std::string address() const { return fmt::format("node:{}", self.number); }

  /// The built-in services, then the application's.
  [[nodiscard]] std::vector<service*> all_services() {
    std::vector<service*> all{&workers, &beat, &agent, &listener};
    for (auto& s : services)
      all.push_back(s.get());
    return all;
  }

  /// Refuses to start when the server cannot give every service its connections.
  void check_connection_budget(const std::vector<service*>& all);

  // -- node_context ---------------------------------------------------------------------------

  [[nodiscard]] int number() const override { return self.number; }
  [[nodiscard]] const node_settings& settings() const override { return settings_; }
  [[nodiscard]] const routing& app() const override { return app_; }
  [[nodiscard]] std::unique_ptr<connection> connect() const override {
    return std::make_unique<connection>(persistence::store_settings_of(settings_));
  }
  /// What a list of wake-up targets names: local queues, and transports ("transport://...")
  /// whose relays have outbox rows.
  struct wake_targets {
    std::vector<std::string> local;
    std::set<std::string_view> transports;
  };
  static wake_targets split(const std::vector<std::string>& queues) {
    wake_targets t;
    for (const auto& q : queues) {
      if (auto scheme = q.find("://"); scheme != std::string::npos)
        t.transports.insert(std::string_view{q}.substr(0, scheme));
      else
        t.local.push_back(q);
    }
    return t;
  }
  void wake_relays(const std::set<std::string_view>& transports) {
    for (auto t : transports)
      if (auto i = outbox_wakers.find(t); i != outbox_wakers.end())
        i->second();
  }
  /// How much is ready is not known: every worker of the local queues.
  void wake(const std::vector<std::string>& queues) override {
    auto targets = split(queues);
    workers.wake(targets.local);
    wake_relays(targets.transports);
  }
  /// A queue is named once per envelope: as many of its workers as those envelopes need.
  void committed(const std::vector<std::string>& queues) override {
    auto targets = split(queues);
    workers.wake_for(targets.local);
    wake_relays(targets.transports);
    std::vector<std::string> elsewhere;
    for (auto& q : targets.local)
      if (!served.contains(q))
        elsewhere.push_back(std::move(q));
    if (elsewhere.empty())
      return;
    if (auto a = cluster->node_actor()) // workers call this from their threads
      caf::anon_send(a, peer_wake_atom::value, std::move(elsewhere));
  }
  void on_outbox(std::string transport, std::function<void()> wake) override {
    outbox_wakers[std::move(transport)] = std::move(wake);
  }
  [[nodiscard]] node_health health() const override {
    return failures ? failures->health() : node_health{};
  }
  [[nodiscard]] bool leader() const override { return cluster->leader; }

  /// Spawns the node actor and publishes it at cluster-host:cluster-port; its address goes
  /// into the node's row with the next heartbeat.
  void publish_node_actor();

  // -- dispatch_sink --------------------------------------------------------------------------

  void deliver_buffered(std::vector<envelope> envelopes) override {
    std::vector<envelope> elsewhere;
    std::erase_if(envelopes, [&](envelope& e) {
      if (served.contains(e.queue))
        return false;
      elsewhere.push_back(std::move(e));
      return true;
    });
    if (!envelopes.empty())
      workers.deliver_buffered(std::move(envelopes));
    if (elsewhere.empty())
      return;
    if (auto a = cluster->node_actor())
      caf::anon_send(a, peer_buffered_atom::value, std::move(elsewhere));
    else
      for (const auto& e : elsewhere)
        log(log_level::warning, "buffered {} {} dropped: node {} does not serve queue {}",
            e.message_type, e.id, self.number, e.queue);
  }

  void deliver_reply(reply_message reply) override {
    if (reply.reply_to == address()) {
      hand_over(std::move(reply));
    } else if (auto a = node_of_address(reply.reply_to) ? cluster->node_actor() : caf::actor{}) {
      caf::anon_send(a, peer_reply_atom::value, std::move(reply)); // another node asked
    } else {
      log(log_level::debug, "reply to {} dropped: no node of this cluster asked", reply.reply_to);
    }
  }

  /// Hands `reply` to the request of this node it answers, if that still waits.
  void hand_over(reply_message reply) {
    std::lock_guard guard{replies_mutex};
    auto i = waiting.find(reply.request_id);
    if (i == waiting.end())
      return; // the requester gave up
    i->second.set_value(std::move(reply));
    waiting.erase(i);
  }

  /// node::send_bodies: stores what is durable, then wakes and hands over the rest.
  std::vector<std::string> send(std::string_view type, std::vector<std::string> bodies,
                                send_options options, micros at, dispatch how);
  /// node::request: sends `body` with this node as its reply address and waits for the reply.
  reply_message request(std::string_view type, std::string body, std::chrono::milliseconds timeout);

  void count(const handling_counts& c) override {
    handled += c.handled;
    expired += c.expired;
    retried += c.retried;
    dead += c.dead;
    discarded += c.discarded;
    deferred += c.deferred;
    claims += c.claims;
    empty_claims += c.empty_claims;
  }

  // -- connections for callers' sends ---------------------------------------------------------

  std::unique_ptr<connection> lease() {
    {
      std::lock_guard guard{pool_mutex};
      if (!pool.empty()) {
        auto c = std::move(pool.back());
        pool.pop_back();
        return c;
      }
    }
    return connect();
  }

  void give_back(std::unique_ptr<connection> c) {
    if (!c->connected())
      return;
    std::lock_guard guard{pool_mutex};
    pool.push_back(std::move(c));
  }

  /// Runs `f` on a leased connection and gives it back.
  template <class F>
  auto with_connection(F&& f) {
    auto c = lease();
    struct returner {
      impl& node;
      std::unique_ptr<connection>& c;
      ~returner() { node.give_back(std::move(c)); }
    } r{*this, c};
    return f(*c);
  }
};

node::node(const routing& app, node_settings settings)
  : impl_(std::make_unique<impl>(app, std::move(settings), nullptr)) {}

node::node(const routing& app, node_settings settings, caf::actor_system_config& config)
  : impl_(std::make_unique<impl>(app, std::move(settings), &config)) {}

node::~node() {
  stop();
}

int node::number() const {
  return impl_->self.number;
}

const node_settings& node::settings() const {
  return impl_->settings_;
}

node_stats node::stats() const {
  return {impl_->handled.load(), impl_->expired.load(),     impl_->retried.load(),
          impl_->dead.load(),    impl_->discarded.load(),   impl_->deferred.load(),
          impl_->claims.load(),  impl_->empty_claims.load()};
}

node_health node::health() const {
  return impl_->health();
}

bool node::drain_requested() const {
  return impl_->cluster->drain_requested;
}

const char* to_string(node_health::state s) {
  switch (s) {
    case node_health::state::healthy: return "healthy";
    case node_health::state::unhealthy: return "unhealthy";
    case node_health::state::failed: return "failed";
  }
  return "failed";
}

void node::add_service(std::unique_ptr<service> s) {
  if (impl_->running)
    throw std::logic_error{"add services before node::start"};
  impl_->services.push_back(std::move(s));
}

void node::impl::check_connection_budget(const std::vector<service*>& all) {
  // The registration connection checks this; sends need at least one more.
  std::int64_t needed = 1;
  std::vector<std::string> parts;
  for (const auto* s : all) {
    if (s->connections() == 0)
      continue;
    needed += static_cast<std::int64_t>(s->connections());
    parts.push_back(fmt::format("{} {}", s->connections(), s->name()));
  }
  parts.emplace_back("1 for sends");
  auto budget = persistence::store_admin{*registration}.free_connections();
  if (needed > budget.free)
    throw startup_error{fmt::format(
      "this node needs {} database connections besides its first ({}) but the server has {} "
      "free (max_connections {}, {} in use): lower --concurrency or --queue-concurrency, or "
      "raise the server's max_connections",
      needed, fmt::join(parts, ", "), std::max<std::int64_t>(budget.free, 0), budget.max,
      budget.used)};
}

void node::impl::publish_node_actor() {
  const auto& s = settings_;
  node_hooks hooks{
    .wake = [this](const std::vector<std::string>& queues) { wake(queues); },
    // A peer's envelopes go to this node's workers, never on to a third node: a stale view of
    // who serves what must not bounce them between nodes.
    .deliver =
      [this](std::vector<envelope> envelopes) { workers.deliver_buffered(std::move(envelopes)); },
    .reply =
      [this](reply_message reply) {
        if (reply.reply_to == address())
          hand_over(std::move(reply));
      },
    .ask = [this](
             const std::string& type, std::string body,
             std::chrono::milliseconds timeout) { return request(type, std::move(body), timeout); },
  };
  node_actor = spawn_node_actor(*system, self.number, cluster, std::move(hooks), s.cluster_tls());
  node_actor->attach_functor([record = failures, n = self.number](const caf::error& reason) {
    if (reason && reason != caf::exit_reason::user_shutdown)
      record->fail(fmt::format("the node actor of node {} failed: {}", n, to_string(reason)));
  });
  auto port = depot::publish_node_actor(
    node_actor, s.cluster_host, static_cast<std::uint16_t>(s.cluster_port), s.cluster_tls());
  if (!port)
    throw startup_error{
      fmt::format("cannot listen for cluster peers on {}:{} (--cluster-host, --cluster-port): {}",
                  s.cluster_host, s.cluster_port, system->render(port.error()))};
  cluster->set_uri(fmt::format("{}:{}", s.cluster_host, *port));
  cluster->set_node_actor(node_actor);
}

void node::start() {
  auto& d = *impl_;
  if (d.running)
    return;
  const auto& s = d.settings_;
  try {
    check(s);
  } catch (const invalid_setting& e) {
    throw startup_error{e.what()};
  }
  if (d.app_.uses_kafka() && !d.kafka_added) {
    if (s.kafka.empty())
      throw startup_error{
        "the application routes messages to Kafka or listens to Kafka topics, but no Kafka is "
        "configured: set --kafka (DEPOT_KAFKA) to the brokers (host:port,...) or to 'embedded'"};
    try {
      d.services.push_back(make_kafka_transport(d.app_, s));
    } catch (const error& e) {
      throw startup_error{e.what()};
    }
    d.kafka_added = true;
  }
  auto all = d.all_services();
  bool registered = false;
  // Undoes a start that failed half-way: no node row and no connections are left behind.
  auto undo = [&d, &registered] {
    if (registered) {
      try {
        persistence::node_registry{*d.registration}.deregister(d.self);
      } catch (const db_error&) {
        // The row goes once its heartbeat is stale.
      }
    }
    for (auto* x : d.all_services())
      x->stopped();
    if (d.node_actor) {
      caf::anon_send_exit(d.node_actor, caf::exit_reason::user_shutdown);
      d.node_actor = caf::actor{};
    }
    d.cluster->set_node_actor({});
    d.cluster->leader = false;
    d.system.reset(); // waits for the actors spawned so far
    d.registration.reset();
  };
  try {
    d.registration = d.connect();
    if (s.auto_provision) {
      persistence::apply_schema(*d.registration, 0, d.app_.sagas());
    } else if (auto v = persistence::schema_version(*d.registration);
               v != persistence::latest_schema_version()) {
      throw startup_error{
        fmt::format("schema '{}' is at version {}, this node needs {}: run "
                    "`db apply` or enable auto-provision",
                    s.schema, v, persistence::latest_schema_version())};
    } else if (auto missing =
                 persistence::saga_store{*d.registration}.missing_tables(d.app_.sagas());
               !missing.empty()) {
      throw startup_error{
        fmt::format("the table of saga {} does not exist: run `db apply` or "
                    "enable auto-provision",
                    fmt::join(missing, ", "))};
    }
    try {
      d.workers.plan(d.app_, s);
    } catch (const std::invalid_argument& e) {
      throw startup_error{e.what()};
    }
    d.check_connection_budget(all);
    persistence::node_registry registry{*d.registration};
    d.self = registry.register_node(s.node_id, "", version);
    registered = true;
    d.cluster->leader = registry.try_lead();
    std::vector<std::string> served; // in the application's order, for the node's row
    for (const auto& q : d.app_.queues())
      if (s.serves(q.name))
        served.push_back(q.name);
    d.served = {served.begin(), served.end()};
    d.cluster->set_queues(std::move(served));
    std::vector<supervised> actors;
    for (auto* x : all)
      for (auto& a : x->actors(d))
        actors.push_back(std::move(a));
    if (d.config == nullptr) {
      d.own_config = std::make_unique<caf::actor_system_config>();
      d.config = d.own_config.get();
    }
    if (!d.cluster_loaded) { // peers talk to the node actor through CAF's middleman
      load_cluster_modules(*d.config, s);
      d.cluster_loaded = true;
    }
    d.system = std::make_unique<caf::actor_system>(*d.config);
    d.failures = std::make_shared<failure_record>(s.max_restarts, s.restart_window);
    d.publish_node_actor();
    d.supervisor = spawn_supervisor(*d.system, std::move(actors), d.failures);
  } catch (const db_error& e) {
    undo();
    throw startup_error{e.what()};
  } catch (...) {
    undo();
    throw;
  }
  d.running = true;
  std::vector<std::string> all_queues;
  for (const auto& q : d.app_.queues())
    all_queues.push_back(q.name);
  d.wake(all_queues); // drain what waited while no node ran
  log(log_level::info, "node {} started: {} queue(s), {} service(s), schema {}, cluster {}{}",
      d.self.number, d.app_.queues().size(), all.size(), s.schema, d.cluster->presence().uri,
      d.cluster->leader ? " (leader)" : "");
}

void node::stop() {
  auto& d = *impl_;
  if (!d.running)
    return;
  d.running = false;
  // The supervisor stops every actor it runs, and restarts none from then on.
  caf::anon_send_exit(d.supervisor, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(d.node_actor, caf::exit_reason::user_shutdown);
  d.cluster->set_node_actor({});
  d.node_actor = caf::actor{};
  d.system->await_all_actors_done();
  d.supervisor = caf::actor{};
  d.cluster->leader = false;
  for (auto* s : d.all_services())
    s->stopped();
  try {
    persistence::node_registry{*d.registration}.deregister(d.self);
  } catch (const db_error& e) {
    log(log_level::warning, "could not deregister node {}: {}", d.self.number, e.what());
  }
  d.system.reset();
  d.registration.reset();
  log(log_level::info, "node {} stopped", d.self.number);
}

std::vector<std::string> node::send_bodies(std::string_view type, std::vector<std::string> bodies,
                                           send_options options, micros at, dispatch how) {
  return impl_->send(type, std::move(bodies), std::move(options), at, how);
}

std::vector<std::string> node::impl::send(std::string_view type, std::vector<std::string> bodies,
                                          send_options options, micros at, dispatch how) {
  auto sent = with_connection([&](connection& c) {
    return send_durably(c, app_, settings_.service, self.number, type, bodies, options, at, how);
  });
  std::vector<std::string> ids, ready;
  for (const auto* stored : {&sent.inbox, &sent.outbox})
    for (const auto& e : *stored) {
      ids.push_back(e.id);
      if (e.status == envelope_status::incoming)
        ready.push_back(e.queue);
    }
  for (const auto& e : sent.memory)
    ids.push_back(e.id);
  committed(ready);
  deliver_buffered(std::move(sent.memory));
  return ids;
}

reply_message node::request_body(std::string_view type, std::string body,
                                 std::chrono::milliseconds timeout) {
  return impl_->request(type, std::move(body), timeout);
}

reply_message node::impl::request(std::string_view type, std::string body,
                                  std::chrono::milliseconds timeout) {
  send_options options;
  options.headers[header::reply_to] = address();
  // The id is known only once the envelope exists, so register under a correlation header
  // chosen here and carried as the request's id.
  auto request_id = new_envelope_id();
  options.headers[header::correlation_id] = request_id;
  std::future<reply_message> reply;
  {
    std::lock_guard guard{replies_mutex};
    reply = waiting[request_id].get_future();
  }
  try {
    send(type, {std::move(body)}, std::move(options), 0, dispatch::send);
  } catch (...) {
    std::lock_guard guard{replies_mutex};
    waiting.erase(request_id);
    throw;
  }
  if (reply.wait_for(timeout) != std::future_status::ready) {
    std::lock_guard guard{replies_mutex};
    waiting.erase(request_id);
    throw request_timeout{fmt::format("no reply to {} within {} ms", type, timeout.count())};
  }
  return reply.get();
}

std::vector<persistence::queue_count> node::counts() {
  return impl_->with_connection([](connection& c) { return persistence::store_admin{c}.counts(); });
}

std::vector<std::string> node::replay_dead_letters(const persistence::dead_letter_filter& filter) {
  return impl_->with_connection([&](connection& c) {
    std::vector<std::string> ids;
    persistence::retry_transaction(
      c, [&](connection& t) { ids = persistence::dead_letters{t}.replay(filter); });
    return ids;
  });
}

bool node::cancel(const std::string& id) {
  return impl_->with_connection([&](connection& c) {
    bool cancelled = false;
    persistence::retry_transaction(
      c, [&](connection& t) { cancelled = persistence::saga_store{t}.cancel_scheduled(id); });
    return cancelled;
  });
}

void node::cancel_saga(std::string_view saga, const std::string& id, std::string reason) {
  const auto* s = impl_->app_.find_saga(saga);
  if (s == nullptr)
    throw no_route{fmt::format("no saga type '{}'", saga)};
  send_bodies(s->cancel_type(), {to_json(saga_signal{id, std::move(reason)})}, {}, 0,
              dispatch::send);
}

std::size_t node::purge(const std::vector<std::string>& queues) {
  return impl_->with_connection(
    [&](connection& c) { return persistence::store_admin{c}.purge(queues); });
}

bool node::wait_idle(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  return impl_->with_connection([&](connection& c) {
    persistence::store_admin admin{c};
    bool idle = false;
    while (!(idle = admin.pending() == 0) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    return idle;
  });
}

} // namespace depot
