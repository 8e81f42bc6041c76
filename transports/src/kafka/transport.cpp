// The Kafka transport service: the outbox relay and the listeners, each a detached actor (they
// block on Postgres and on librdkafka) with its own store connection and Kafka client.
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>

#include <caf/all.hpp>
#include <fmt/format.h>

#include "client.hpp"
#include "depot/actors/service.hpp"
#include "depot/persistence/dead_letters.hpp"
#include "depot/persistence/inbox.hpp"
#include "depot/persistence/kafka_offsets.hpp"
#include "depot/persistence/outbox.hpp"
#include "depot/persistence/store_admin.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "depot/runtime/log.hpp"
#include "depot/transports/kafka.hpp"
#include "periodic.hpp"

namespace depot {

using persistence::db_error;

namespace {

using relay_atom = caf::atom_constant<caf::atom("relay")>;
using delivered_atom = caf::atom_constant<caf::atom("delivered")>;
using listen_atom = caf::atom_constant<caf::atom("listen")>;

/// Envelopes the relay reads and produces at a time.
constexpr int relay_batch = 1000;
/// Records a listener stores in one transaction at most.
constexpr int listener_batch = 1000;
/// How long a listener waits for a record before it looks at its mailbox again.
constexpr int poll_ms = 100;
/// How often a listener checks the backlog of its queues: running, and paused (resuming late
/// leaves the queues idle).
constexpr std::chrono::milliseconds backlog_check{500};
constexpr std::chrono::milliseconds paused_check{100};
/// How often a listener that consumes on the leader only looks whether its node leads.
constexpr std::chrono::milliseconds standby_check{200};

// -- relay ----------------------------------------------------------------------------------------

/// What the relay shares with the transport: its current incarnation, for wake-ups.
struct relay_slot {
  std::mutex mutex;
  caf::actor actor;
  std::atomic<bool> pending{false}; // a wake-up is on its way: coalesce

  void wake() {
    if (pending.exchange(true))
      return;
    std::lock_guard guard{mutex};
    if (actor)
      caf::anon_send(actor, relay_atom::value);
  }
};

struct relay_state {
  std::unique_ptr<persistence::connection> conn;
  bool leader = false;
  std::vector<envelope> batch;      ///< produced, waiting for delivery reports
  std::vector<signed char> outcome; ///< per envelope of batch: 0 waiting, 1 delivered, -1 failed
  std::size_t waiting = 0;
  std::string failure; ///< the last delivery error
  std::chrono::milliseconds backoff = min_backoff;
  /// After a failure: nothing is read or produced before then, whatever wakes the relay.
  std::chrono::steady_clock::time_point resume_at;
  std::size_t turn = 0;   ///< the destination read first: each in turn, so none starves
  kafka::handle producer; // last: destroyed first, so no report reaches a dead state
  static inline const char* name = "depot.kafka_relay";

  ~relay_state() {
    if (producer)
      rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  }
};

using relay_actor = caf::stateful_actor<relay_state>;

struct relay_env {
  node_context* node;
  std::string brokers;
  relay_slot* slot;
  std::vector<std::string> destinations;         ///< "kafka://topic"
  std::map<std::string, cloudevents_mode> modes; ///< by destination
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto& st = *static_cast<relay_state*>(opaque);
  auto i = reinterpret_cast<std::uintptr_t>(m->_private) - 1;
  if (i >= st.outcome.size() || st.outcome[i] != 0)
    return;
  st.outcome[i] = m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? 1 : -1;
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
    st.failure = rd_kafka_err2str(m->err);
  --st.waiting;
}

kafka::handle make_producer(const relay_env& env, relay_state& st) {
  const auto& s = env.node->settings();
  kafka::config conf{env.brokers, s, fmt::format("{}-relay-{}", s.service, env.node->number())};
  conf.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5");
  conf.set("message.timeout.ms", "30000");
  conf.apply_user_properties();
  rd_kafka_conf_set_dr_msg_cb(conf.get(), on_delivery);
  rd_kafka_conf_set_opaque(conf.get(), &st);
  return conf.make(RD_KAFKA_PRODUCER);
}

/// Waits the backoff before the next attempt, and doubles it.
void back_off(relay_actor* self) {
  auto& st = self->state;
  st.resume_at = std::chrono::steady_clock::now() + st.backoff;
  self->delayed_send(self, st.backoff, relay_atom::value);
  st.backoff = next_backoff(st.backoff);
}

void relay_failed(relay_actor* self, const db_error& e) {
  auto& st = self->state;
  log(log_level::warning, "Kafka relay: database {} ({}); retrying in {} ms", to_string(e.kind()),
      e.what(), st.backoff.count());
  st.conn.reset(); // its relay lock went with it, or goes now
  st.leader = false;
  back_off(self);
}

/// Produces the next batch of the outbox, when this node holds the relay lock.
void relay_next(relay_actor* self, const relay_env& env) {
  auto& st = self->state;
  env.slot->pending = false;
  if (st.waiting > 0)
    return; // a batch is in flight; its last report continues
  if (std::chrono::steady_clock::now() + std::chrono::milliseconds{10} < st.resume_at)
    return; // backing off: the delayed message continues
  const auto& s = env.node->settings();
  try {
    if (!st.conn)
      st.conn = env.node->connect();
    if (!st.leader) {
      st.leader = persistence::outbox{*st.conn}.lock_relay();
      if (!st.leader)
        return; // another node relays; the polling fallback asks again
      log(log_level::info, "node {} relays the outbox to Kafka at {}", env.node->number(),
          env.brokers);
    }
    auto order = env.destinations;
    std::rotate(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(st.turn), order.end());
    st.turn = (st.turn + 1) % order.size();
    st.batch = persistence::outbox{*st.conn}.pending(order, relay_batch);
  } catch (const db_error& e) {
    relay_failed(self, e);
    return;
  }
  if (st.batch.empty())
    return;
  if (!st.producer)
    st.producer = make_producer(env, st);
  st.outcome.assign(st.batch.size(), 0);
  st.waiting = 0;
  auto source = s.source_uri();
  for (std::size_t i = 0; i < st.batch.size(); ++i) {
    const auto& e = st.batch[i];
    auto mode = env.modes.at(e.queue);
    auto r = cloudevents::to_record(e, e.queue.substr(e.queue.find("://") + 3), source, mode);
    auto* headers = rd_kafka_headers_new(r.headers.size());
    for (const auto& [name, value] : r.headers)
      rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                          static_cast<ssize_t>(value.size()));
    auto err =
      rd_kafka_producev(st.producer.get(), RD_KAFKA_V_TOPIC(r.topic.c_str()),
                        RD_KAFKA_V_KEY(r.key->data(), r.key->size()),
                        RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
                        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(i + 1)), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_headers_destroy(headers); // produce frees them only on success
      st.outcome[i] = -1;
      st.failure = rd_kafka_err2str(err);
    } else {
      ++st.waiting;
    }
  }
  self->send(self, delivered_atom::value);
}

/// Serves delivery reports; once the batch has all of them, removes what was delivered and
/// goes on (or backs off when something was not).
void relay_reports(relay_actor* self) {
  auto& st = self->state;
  if (st.waiting > 0) {
    rd_kafka_poll(st.producer.get(), 50);
    char reason[256];
    if (rd_kafka_fatal_error(st.producer.get(), reason, sizeof reason) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      log(log_level::error, "Kafka relay: the producer failed ({}); making a new one", reason);
      st.producer.reset(); // its outstanding reports are lost: the batch counts as failed
      for (auto& o : st.outcome)
        if (o == 0)
          o = -1;
      st.waiting = 0;
      st.failure = reason;
    }
    if (st.waiting > 0) {
      self->send(self, delivered_atom::value);
      return;
    }
  }
  std::vector<std::string> sent, failed;
  for (std::size_t i = 0; i < st.batch.size(); ++i)
    (st.outcome[i] > 0 ? sent : failed).push_back(st.batch[i].id);
  st.batch.clear();
  st.outcome.clear();
  try {
    persistence::outbox box{*st.conn};
    box.remove(sent); // lost here: the rows are produced again, with the same ids
    box.count_attempt(failed);
  } catch (const db_error& e) {
    relay_failed(self, e);
    return;
  }
  if (failed.empty()) {
    st.backoff = min_backoff;
    if (!sent.empty())
      self->send(self, relay_atom::value); // more may wait
    return;
  }
  log(log_level::warning,
      "Kafka relay: {} of {} envelope(s) not delivered ({}); they stay in the outbox, retrying "
      "in {} ms",
      failed.size(), failed.size() + sent.size(), st.failure, st.backoff.count());
  back_off(self);
}

caf::behavior relay(relay_actor* self, relay_env env) {
  fail_on_exception(self);
  self->send(self, relay_atom::value);
  auto interval = env.node->settings().polling_interval;
  return {
    [self, env](relay_atom) { relay_next(self, env); },
    [self](delivered_atom) { relay_reports(self); },
    caf::after(interval) >> [self, env] { relay_next(self, env); },
  };
}

// -- listener -------------------------------------------------------------------------------------

struct listener_state {
  std::unique_ptr<persistence::connection> conn;
  std::vector<cloudevents::record> held; ///< consumed, not stored yet
  bool one_by_one = false;               ///< the store refused a batch: find the record it refuses
  std::string refusal;                   ///< why the store refused the first held record, alone
  std::set<std::string> queues;          ///< where its records went: the backlog it watches
  bool paused = false;
  std::chrono::steady_clock::time_point next_check;
  std::chrono::milliseconds backoff = min_backoff;
  node_context* node = nullptr;
  const kafka_listener* declared = nullptr;
  std::string group;
  kafka::handle consumer; // last: destroyed (leaving the group) first
  static inline const char* name = "depot.kafka_listener";
};

using listener_actor = caf::stateful_actor<listener_state>;

/// Assignments: seeks to the positions kept in Postgres (offset_store::postgres), else where
/// the group's committed offsets say.
void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                  void* opaque) {
  auto& st = *static_cast<listener_state*>(opaque);
  if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    rd_kafka_assign(rk, nullptr);
    return;
  }
  if (st.declared->offsets == offset_store::postgres) {
    try {
      if (!st.conn)
        st.conn = st.node->connect();
      for (const auto& o : persistence::kafka_offsets{*st.conn}.load(st.group))
        if (auto* p = rd_kafka_topic_partition_list_find(parts, o.topic.c_str(), o.partition))
          p->offset = o.next;
    } catch (const db_error& e) {
      log(log_level::warning,
          "Kafka listener {}: cannot read its offsets ({}); starting from the group's committed "
          "ones",
          st.group, e.what());
    }
  }
  rd_kafka_assign(rk, parts);
  st.paused = false; // a new assignment starts unpaused; the next check decides
}

kafka::handle make_consumer(const std::string& brokers, listener_state& st) {
  const auto& s = st.node->settings();
  kafka::config conf{brokers, s, fmt::format("{}-listener-{}", s.service, st.node->number())};
  conf.set("group.id", st.group)
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("auto.offset.reset", st.declared->start == offset_reset::earliest ? "earliest" : "latest")
    .set("enable.partition.eof", "false")
    // A fetch waits this long for data at most: short, so that records produced to an idle
    // partition arrive soon whatever the broker (the mock answers only when the wait is over).
    .set("fetch.wait.max.ms", "100");
  conf.apply_user_properties();
  rd_kafka_conf_set_rebalance_cb(conf.get(), on_rebalance);
  rd_kafka_conf_set_opaque(conf.get(), &st);
  auto consumer = conf.make(RD_KAFKA_CONSUMER);
  rd_kafka_poll_set_consumer(consumer.get());
  kafka::partition_list topics{
    rd_kafka_topic_partition_list_new(static_cast<int>(st.declared->topics.size()))};
  for (const auto& t : st.declared->topics)
    rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(consumer.get(), topics.get()))
    throw kafka::client_error{fmt::format(
      "cannot subscribe to {}: {}", fmt::join(st.declared->topics, ","), rd_kafka_err2str(err))};
  return consumer;
}

/// Pauses the assigned partitions while the queues fed hold more than the bound, resumes below.
void apply_back_pressure(listener_state& st) {
  auto now = std::chrono::steady_clock::now();
  if (now < st.next_check || st.queues.empty())
    return;
  auto bound =
    st.declared->max_backlog > 0 ? st.declared->max_backlog : st.node->settings().kafka_max_backlog;
  if (!st.conn)
    st.conn = st.node->connect();
  auto ready =
    persistence::store_admin{*st.conn}.ready({st.queues.begin(), st.queues.end()}, bound + 1);
  auto over = ready > bound;
  rd_kafka_topic_partition_list_t* assigned = nullptr;
  if (rd_kafka_assignment(st.consumer.get(), &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return;
  kafka::partition_list parts{assigned};
  if (over)
    rd_kafka_pause_partitions(st.consumer.get(), parts.get()); // again: new assignments too
  else if (st.paused)
    rd_kafka_resume_partitions(st.consumer.get(), parts.get());
  if (over != st.paused)
    log(log_level::info, "Kafka listener {}: {} ({} ready envelopes, bound {})", st.group,
        over ? "paused" : "resumed", ready, bound);
  st.paused = over;
  st.next_check = now + (st.paused ? paused_check : backlog_check);
}

/// A dead letter for record `r`, which could not become an envelope: its raw bytes in base64,
/// where it was and the reason. Kept for operators, never replayed.
envelope dead_letter_of(const cloudevents::record& r, const std::string& id,
                        const std::string& type) {
  envelope d;
  d.id = id;
  d.queue = fmt::format("{}://{}", kafka_transport, r.topic);
  d.message_type = type;
  d.body = cloudevents::base64_encode(r.value);
  for (const auto& [name, value] : r.headers)
    d.headers[name] = value;
  d.headers["kafka-topic"] = r.topic;
  d.headers["kafka-partition"] = std::to_string(r.partition);
  d.headers["kafka-offset"] = std::to_string(r.offset);
  if (r.key)
    d.headers["kafka-key"] = cloudevents::base64_encode(*r.key);
  return d;
}

/// Stores the first `count` records the listener holds in one transaction: envelopes for their
/// queues, dead letters for the rest (and the positions, with offset_store::postgres); then
/// commits the offsets to the group and wakes the queues. With a `refusal`, the one record is
/// kept as a dead letter for that reason.
void store_held(listener_actor* self, std::size_t count, const std::string& refusal) {
  auto& st = self->state;
  const auto& app = st.node->app();
  std::vector<envelope> envelopes;
  std::vector<std::tuple<envelope, std::string, std::string>> dead;  // letter, type, reason
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> next; // (topic, partition)
  auto stored = st.held.begin() + static_cast<std::ptrdiff_t>(count);
  for (auto i = st.held.begin(); i != stored; ++i) {
    const auto& r = *i;
    auto& n = next[{r.topic, r.partition}];
    n = std::max(n, r.offset + 1);
    std::string id =
      cloudevents::name_based_id("kafka", fmt::format("{}/{}/{}", r.topic, r.partition, r.offset));
    std::string type;
    if (!refusal.empty()) {
      dead.emplace_back(dead_letter_of(r, id, type), "depot::persistence::db_error", refusal);
      continue;
    }
    try {
      auto e = cloudevents::from_record(r);
      id = e.id;
      type = e.message_type;
      auto queues = app.subscribers_of(e.message_type);
      if (queues.empty())
        throw unknown_message_type{fmt::format(
          "CloudEvent type '{}' is a message type no handler of this service takes", type)};
      const auto& q = *queues.front();
      if (q.mode != endpoint_mode::durable)
        throw no_route{
          fmt::format("queue '{}' of message type '{}' is buffered: Kafka records go "
                      "to durable queues",
                      q.name, e.message_type)};
      try {
        e.key = app.validate(e.message_type, e.body);
      } catch (const decode_error& x) {
        throw decode_error{fmt::format("CloudEvent data is not a valid '{}': {}", type, x.what())};
      } catch (const validation_error& x) {
        throw validation_error{
          fmt::format("CloudEvent data is not a valid '{}': {}", type, x.what())};
      }
      e.queue = q.name;
      envelopes.push_back(std::move(e));
    } catch (const error& x) {
      dead.emplace_back(dead_letter_of(r, id, type), detail::demangle(typeid(x).name()), x.what());
    }
  }
  std::vector<persistence::partition_offset> positions;
  for (const auto& [at, offset] : next)
    positions.push_back({at.first, at.second, offset});
  if (!st.conn)
    st.conn = st.node->connect();
  {
    persistence::unit_of_work uow{*st.conn};
    persistence::inbox{*st.conn}.insert(envelopes, st.node->number());
    persistence::dead_letters letters{*st.conn};
    for (const auto& [letter, type, reason] : dead)
      letters.add(letter, type, reason, false);
    if (st.declared->offsets == offset_store::postgres)
      persistence::kafka_offsets{*st.conn}.save(st.group, positions);
    uow.commit();
  }
  st.held.erase(st.held.begin(), stored);
  for (const auto& [letter, type, reason] : dead)
    log(log_level::warning, "Kafka record {}/{}@{} kept as dead letter {}: {}",
        letter.headers.at("kafka-topic"), letter.headers.at("kafka-partition"),
        letter.headers.at("kafka-offset"), letter.id, reason);
  kafka::partition_list commit{rd_kafka_topic_partition_list_new(static_cast<int>(next.size()))};
  for (const auto& [at, offset] : next)
    rd_kafka_topic_partition_list_add(commit.get(), at.first.c_str(), at.second)->offset = offset;
  if (auto err = rd_kafka_commit(st.consumer.get(), commit.get(), 0))
    log(log_level::warning,
        "Kafka listener {}: offsets not committed ({}); stored records may come again and are "
        "then ignored by id",
        st.group, rd_kafka_err2str(err));
  std::vector<std::string> woken;
  for (const auto& e : envelopes) {
    st.queues.insert(e.queue);
    woken.push_back(e.queue);
  }
  st.node->wake(woken);
}

/// Whether a listener that consumes on the leader only stands by: its node does not lead, and it
/// holds no record (what it holds it stores first). Leaves the group when it stops leading.
bool standing_by(listener_state& st) {
  if (!st.declared->leader_only || st.node->leader() || !st.held.empty())
    return false;
  if (st.consumer) {
    st.consumer.reset(); // leaves the group: the leader's listener gets every partition
    log(log_level::info, "Kafka listener {}: node {} no longer leads: stopped consuming", st.group,
        st.node->number());
  }
  return true;
}

void listen_once(listener_actor* self, const std::string& brokers) {
  auto& st = self->state;
  if (standing_by(st)) {
    self->delayed_send(self, standby_check, listen_atom::value);
    return;
  }
  try {
    if (!st.consumer) {
      st.consumer = make_consumer(brokers, st);
      if (st.declared->leader_only)
        log(log_level::info, "Kafka listener {}: node {} leads: consuming {}", st.group,
            st.node->number(), fmt::join(st.declared->topics, ","));
    }
    if (st.held.empty()) {
      apply_back_pressure(st);
      auto* m = rd_kafka_consumer_poll(st.consumer.get(), poll_ms);
      while (m != nullptr) {
        kafka::message owned{m};
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
          st.held.push_back(kafka::record_of(*m));
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
          log(log_level::warning, "Kafka listener {}: {}", st.group, rd_kafka_message_errstr(m));
        if (st.held.size() >= static_cast<std::size_t>(listener_batch))
          break;
        m = rd_kafka_consumer_poll(st.consumer.get(), 0);
      }
    }
    if (!st.held.empty()) {
      store_held(self, st.one_by_one ? 1 : st.held.size(), st.refusal);
      st.refusal.clear();
      st.one_by_one = st.one_by_one && !st.held.empty();
    }
    st.backoff = min_backoff;
    self->send(self, listen_atom::value);
  } catch (const db_error& e) {
    if (e.kind() == persistence::failure_kind::permanent && !st.held.empty()) {
      // Some record's data the store cannot take: store one at a time, and keep the one it
      // refuses as a dead letter, rather than retry the batch for ever.
      if (st.one_by_one)
        st.refusal = e.what();
      st.one_by_one = true;
      log(log_level::warning, "Kafka listener {}: the store refused a record ({}); {}", st.group,
          e.what(), st.refusal.empty() ? "storing one at a time" : "keeping it as a dead letter");
      st.conn.reset();
      self->send(self, listen_atom::value);
      return;
    }
    log(log_level::warning,
        "Kafka listener {}: database {} ({}); {} record(s) held, retrying in {} ms", st.group,
        to_string(e.kind()), e.what(), st.held.size(), st.backoff.count());
    st.conn.reset();
    self->delayed_send(self, st.backoff, listen_atom::value);
    st.backoff = next_backoff(st.backoff);
  }
}

caf::behavior listener(listener_actor* self, node_context* node, const kafka_listener* declared,
                       std::string brokers) {
  fail_on_exception(self);
  auto& st = self->state;
  st.node = node;
  st.declared = declared;
  st.group = declared->group.empty() ? node->settings().service : declared->group;
  self->send(self, listen_atom::value);
  return {
    [self, brokers](listen_atom) { listen_once(self, brokers); },
  };
}

// -- the service ----------------------------------------------------------------------------------

class kafka_service final : public service {
public:
  kafka_service(const routing& app, const node_settings& s) : app_(app) {
    if (s.kafka == "embedded") {
      embedded_ = std::make_unique<embedded_kafka>();
      brokers_ = embedded_->bootstrap();
      log(log_level::info,
          "embedded Kafka cluster at {} (any Kafka client can use it, e.g. kcat "
          "-b {} -L)",
          brokers_, brokers_);
    } else {
      brokers_ = s.kafka;
    }
    // A property librdkafka refuses, or a combination a client refuses, stops the start.
    kafka::config producer{brokers_, s, s.service};
    (void)producer.set("enable.idempotence", "true")
      .apply_user_properties()
      .make(RD_KAFKA_PRODUCER);
    kafka::config consumer{brokers_, s, s.service};
    (void)consumer.set("group.id", s.service).apply_user_properties().make(RD_KAFKA_CONSUMER);
  }

  [[nodiscard]] std::string name() const override { return "kafka transport"; }
  [[nodiscard]] std::size_t connections() const override {
    return (app_.kafka_topics().empty() ? 0 : 1) + app_.kafka_listeners().size();
  }

  std::vector<supervised> actors(node_context& node) override {
    std::vector<supervised> result;
    if (!app_.kafka_topics().empty()) {
      relay_env env{&node, brokers_, &relay_, {}, {}};
      for (const auto& t : app_.kafka_topics()) {
        auto uri = kafka_topic(t.name).uri();
        env.destinations.push_back(uri);
        env.modes[uri] = t.mode;
      }
      node.on_outbox(std::string{kafka_transport}, [this] { relay_.wake(); });
      result.push_back({"kafka relay",
                        [env](caf::actor_system& sys) {
                          return sys.spawn<caf::detached>(
                            [env](relay_actor* self) { return relay(self, env); });
                        },
                        [this](const caf::actor& a) {
                          std::lock_guard guard{relay_.mutex};
                          relay_.actor = a;
                        }});
    }
    for (const auto& l : app_.kafka_listeners()) {
      auto brokers = brokers_;
      result.push_back({fmt::format("kafka listener {}", fmt::join(l.topics, ",")),
                        [&node, &l, brokers](caf::actor_system& sys) {
                          return sys.spawn<caf::detached>(
                            [&node, &l, brokers](listener_actor* self) {
                              return listener(self, &node, &l, brokers);
                            });
                        },
                        {}});
    }
    return result;
  }

  void stopped() override {
    std::lock_guard guard{relay_.mutex};
    relay_.actor = caf::actor{};
  }

private:
  const routing& app_;
  std::unique_ptr<embedded_kafka> embedded_; // before the clients that use it, gone after them
  std::string brokers_;
  relay_slot relay_;
};

} // namespace

std::unique_ptr<service> make_kafka_transport(const routing& app, const node_settings& settings) {
  return std::make_unique<kafka_service>(app, settings);
}

} // namespace depot
