// The application's handlers and routes: which queue handles which message type, in which
// endpoint mode, through which middleware, and which other endpoints (a transport's) a message
// type is routed to. Built once before the node starts; read-only after.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "depot/runtime/circuit_breaker.hpp"
#include "depot/runtime/context.hpp"
#include "depot/runtime/endpoint.hpp"
#include "depot/runtime/error_policy.hpp"
#include "depot/runtime/fault.hpp"
#include "depot/runtime/kafka.hpp"
#include "depot/runtime/message.hpp"
#include "depot/runtime/middleware.hpp"
#include "depot/runtime/saga_definition.hpp"

namespace depot {

/// Thrown when a message has no queue to go to.
class no_route : public error {
public:
  explicit no_route(const std::string& what) : error(errc::no_route, what) {}
};

/// Thrown when a queue receives a type it has no handler for. Never retried.
class unknown_message_type : public error {
public:
  explicit unknown_message_type(const std::string& what)
    : error(errc::unknown_message_type, what) {}
};

/// A set of handlers serving one queue, instantiated once per worker of that queue. Function
/// handlers are stateless; a handler actor's object lives as long as its worker.
class queue_handler {
public:
  virtual ~queue_handler() = default;
  /// Decodes the body and runs the handler for `e.message_type`. Throws decode_error,
  /// unknown_message_type, or whatever the handler throws.
  virtual void invoke(const envelope& e, context& ctx) = 0;
};

using invoker = std::function<void(const envelope&, context&, void* self)>;

/// What a queue is and how it is served.
struct queue_definition {
  std::string name;
  endpoint_mode mode = endpoint_mode::durable;
  int concurrency = 0; ///< workers on each node; 0 = the node's default
  /// message type → call of its handler (self is the handler actor's object, or null)
  std::unordered_map<std::string, invoker> handlers;
  /// Makes the state object of one worker (handler actors), or null for function handlers.
  std::function<std::shared_ptr<void>()> make_state;
  /// The circuit breaker of this queue on each node, if it has one.
  std::optional<breaker_settings> breaker;
  /// message type → the circuit breaker of its handler on each node
  std::unordered_map<std::string, breaker_settings> handler_breakers;
  /// message type → its fallback, run instead of its handler while the breaker is open
  std::unordered_map<std::string, invoker> fallbacks;
  /// The saga this queue runs, or null.
  const saga_definition* saga = nullptr;

  /// This queue as an endpoint (transport "local").
  [[nodiscard]] endpoint target() const { return {std::string{local_transport}, name, mode}; }
};

namespace detail {

template <class F, class T>
void call_handler(F& f, const T& m, context& ctx) {
  using result = std::invoke_result_t<F&, const T&, context&>;
  if constexpr (std::is_void_v<result>) {
    f(m, ctx);
  } else {
    static_assert(message<result>, "a handler returns void or a reply message");
    ctx.reply(f(m, ctx));
  }
}

} // namespace detail

class routing;
template <message S>
class saga_builder;

/// Chains the configuration of one queue: `app.handle<T>(f).on_queue("q").buffered()`. The
/// builder of a handler (routing::handle) declares that handler's error policies, the builder
/// of a queue (routing::queue, routing::handler_actor) the queue's.
class queue_builder {
public:
  queue_builder(routing& r, std::string queue, std::string handled_type = {})
    : routing_(r), queue_(std::move(queue)), type_(std::move(handled_type)) {}
  /// Moves the handlers registered through this builder to queue `name`.
  queue_builder& on_queue(std::string name);
  /// Memory-only endpoint.
  queue_builder& buffered();
  /// Workers per node for this queue.
  queue_builder& concurrency(int n);
  /// A circuit breaker on each node for this handler (its envelopes are deferred while it is
  /// open, the queue's other types go on), or for this queue (claims nothing while open).
  queue_builder& circuit_breaker(breaker_settings settings = {});
  /// Runs `f` (like a handler of T) instead of T's handler while this queue's breaker is open.
  template <message T, class F>
  queue_builder& fallback(F f) {
    add_fallback(std::string{type_name_of<T>()},
                 [f](const envelope& e, context& ctx, void*) mutable {
                   auto m = from_json<T>(e.body);
                   detail::call_handler(f, m, ctx);
                 });
    return *this;
  }
  /// The error policy of exceptions of type E, for this handler (or this queue): ends the
  /// chain of queue settings, starts the policy's.
  template <class E>
  error_policy& on_exception() {
    return policies().template on_exception<E>();
  }
  /// The error policy of any exception without a rule of its own here.
  error_policy& on_any_exception() { return policies().on_any_exception(); }
  /// Adds middleware around this handler (or every handler of this queue).
  queue_builder& use(middleware m);

private:
  error_policies& policies();
  void add_fallback(const std::string& type, invoker call);

  routing& routing_;
  std::string queue_;
  std::string type_; ///< the handler's message type; empty for a queue's builder
};

/// Chains the endpoints a message type is routed to: `app.publish<T>().to_kafka("bank.events")`.
class publish_builder {
public:
  publish_builder(routing& r, std::string type) : routing_(r), type_(std::move(type)) {}
  /// Routes the type to `to` as well (see routing::route).
  publish_builder& to(endpoint to);
  /// Routes the type to Kafka topic `topic`, whose events travel in `mode`. Without a topic:
  /// the convention "<prefix>.events", the prefix being the type name up to its first '.'
  /// (bank.account-updated goes to bank.events).
  publish_builder& to_kafka(std::string topic = {},
                            cloudevents_mode mode = cloudevents_mode::binary);

private:
  routing& routing_;
  std::string type_;
};

/// The application: message types, handlers, queues, middleware, routes and Kafka listeners.
class routing {
public:
  /// Registers a function handler `void f(const T&, context&)` (or one returning a reply
  /// message). By default its queue is named after the message type.
  template <message T, class F>
  queue_builder handle(F f) {
    auto type = std::string{type_name_of<T>()};
    add_type<T>();
    add_handler(type, type, [f](const envelope& e, context& ctx, void*) mutable {
      auto m = from_json<T>(e.body);
      detail::call_handler(f, m, ctx);
    });
    return queue_builder{*this, type, type};
  }

  /// Registers a handler actor: class A has `handle(const M&, context&)` for each of Ms and
  /// keeps state across messages. Each worker of `queue` owns one A.
  template <class A, message... Ms>
  queue_builder handler_actor(std::string queue) {
    auto& q = define_queue(queue);
    q.make_state = [] { return std::static_pointer_cast<void>(std::make_shared<A>()); };
    (add_type<Ms>(), ...);
    (add_handler(queue, std::string{type_name_of<Ms>()},
                 [](const envelope& e, context& ctx, void* self) {
                   auto m = from_json<Ms>(e.body);
                   auto& actor = *static_cast<A*>(self);
                   auto call = [&actor](const Ms& x, context& c) { return actor.handle(x, c); };
                   detail::call_handler(call, m, ctx);
                 }),
     ...);
    return queue_builder{*this, queue};
  }

  /// Declares saga type `name` with state S (see saga.hpp): its steps run on queue `name`, its
  /// state lives in table saga_<name>. The name is lower case letters, digits, '-' and '_'.
  template <message S>
  saga_builder<S> saga(const std::string& name);
  [[nodiscard]] const std::deque<saga_definition>& sagas() const { return sagas_; }
  /// The saga type `name`, or null.
  [[nodiscard]] const saga_definition* find_saga(std::string_view name) const;

  /// Routes message type T to `to` as well: a publish reaches it besides every local queue
  /// subscribed to T; a send goes there when no local queue handles T. A transport's endpoint
  /// (transport other than "local") keeps its envelopes in the outbox, committed with the
  /// sender's transaction, until that transport's relay delivers them.
  template <message T>
  void route(endpoint to) {
    add_type<T>();
    add_route(std::string{type_name_of<T>()}, std::move(to));
  }

  /// Starts the routes of message type T to other endpoints: `.to_kafka("bank.events")`.
  template <message T>
  publish_builder publish() {
    add_type<T>();
    return publish_builder{*this, std::string{type_name_of<T>()}};
  }

  /// Feeds Kafka `topics` into the durable inbox: each record, a CloudEvent, becomes an
  /// envelope of its type sent to the queue that handles it. Returns the listener's settings.
  kafka_listener& listen_to_kafka(std::vector<std::string> topics);
  [[nodiscard]] const std::deque<kafka_listener>& kafka_listeners() const { return listeners_; }
  /// The topics routes go to, each with its mode, sorted by name.
  [[nodiscard]] const std::vector<kafka_topic_settings>& kafka_topics() const { return topics_; }
  /// Whether the application declared a Kafka route or listener (the node then needs --kafka).
  [[nodiscard]] bool uses_kafka() const { return !topics_.empty() || !listeners_.empty(); }
  /// Every route of a message type to an endpoint: (type, endpoint), sorted by type.
  [[nodiscard]] std::vector<std::pair<std::string, endpoint>> routes() const;

  /// Registers message type T so that bodies sent to it are checked before they are stored.
  template <message T>
  void add_type() {
    validators_[std::string{type_name_of<T>()}] = [](std::string_view body) {
      return key_of(from_json<T>(body));
    };
  }

  /// Throws decode_error when `body` is not a valid `type` (or, for a type registered nowhere,
  /// not a JSON object). Returns its message key ("" when the type declares none).
  std::string validate(std::string_view type, std::string_view body) const;
  /// Every registered message type, sorted.
  [[nodiscard]] std::vector<std::string> message_types() const;

  /// The builder of queue `name` (defined if it is not), for its settings and error policies.
  queue_builder queue(const std::string& name);

  /// The application's error policy of exceptions of type E: used where neither the handler
  /// nor its queue has a rule that matches.
  template <class E>
  error_policy& on_exception() {
    return app_policies_.template on_exception<E>();
  }
  /// The application's error policy of any exception without a rule of its own.
  error_policy& on_any_exception() { return app_policies_.on_any_exception(); }
  /// The declared chain for what the handler of `type` on `queue` threw: the first matching rule
  /// of the handler, then of the queue, then of the application; null when none matches (the
  /// node's default policy applies).
  [[nodiscard]] const error_policy* error_policy_for(std::string_view queue, std::string_view type,
                                                     const std::exception_ptr& thrown) const;
  /// The declared rules, "scope: exception type: chain", for describe.
  [[nodiscard]] std::vector<std::string> describe_error_policies() const;

  /// Publishes a depot::fault for every envelope an error policy dead-letters or discards, in
  /// the transaction that does it: a subscriber of depot::fault never misses one.
  void publish_faults() {
    add_type<fault>();
    all_faults_ = true;
  }
  /// Publishes a depot::fault for the envelopes of type T only.
  template <message T>
  void publish_faults() {
    add_type<fault>();
    fault_types_.emplace(type_name_of<T>());
  }
  /// Whether a failed envelope of `type` gets a depot::fault (never one of depot.fault itself:
  /// a failing fault handler must not feed itself).
  [[nodiscard]] bool publishes_faults_of(std::string_view type) const;

  /// Adds middleware around every handler, at its position (see middleware.hpp).
  void use(middleware m) { add_middleware(scope::application, {}, std::move(m)); }
  /// Adds a function as middleware of shape around, named "middleware", at stage::user.
  void use(around_call f) { use(around("middleware", std::move(f))); }

  /// Validates every message of type T, wherever it comes from, by `f(const T&, field_errors&)`,
  /// which records each rule the message breaks: a send refuses it, a stored envelope is
  /// dead-lettered with every field error (the validation middleware, at stage::validation).
  template <message T, class F>
  void validate(F f) {
    add_type<T>();
    auto type = std::string{type_name_of<T>()};
    add_validator(type, [f, type](std::string_view body) mutable {
      field_errors errors;
      f(from_json<T>(body), errors);
      errors.throw_if_any(type);
    });
  }

  /// The handlers of `q` (or its fallbacks) for one worker, each behind its middleware chain.
  /// Null for fallbacks when the queue has none.
  [[nodiscard]] std::unique_ptr<queue_handler> instantiate(const queue_definition& q,
                                                           bool fallbacks = false) const;
  /// The middleware chain of the handler of `type` on `queue`, outermost first.
  [[nodiscard]] std::vector<const middleware*> chain_of(std::string_view queue,
                                                        std::string_view type) const;
  /// One line per handler: "queue / type: outermost > ... > handler", for describe.
  [[nodiscard]] std::vector<std::string> describe_middleware() const;

  // -- lookups --------------------------------------------------------------------------------

  /// Where `how` sends a `type`: for send, the first local queue that handles it, else its first
  /// route (throws no_route when there is neither); for publish, every subscribed local queue
  /// and every route (none is fine).
  [[nodiscard]] std::vector<endpoint> targets_of(std::string_view type, dispatch how) const;
  /// The queue `send` routes `type` to; throws no_route.
  [[nodiscard]] const queue_definition& route_of(std::string_view type) const;
  /// Every queue subscribed to `type`.
  [[nodiscard]] std::vector<const queue_definition*> subscribers_of(std::string_view type) const;
  [[nodiscard]] const queue_definition* find_queue(std::string_view name) const;
  [[nodiscard]] const std::deque<queue_definition>& queues() const { return queues_; }

  // -- used by the builders -------------------------------------------------------------------
  queue_definition& define_queue(const std::string& name);
  void move_handlers(const std::string& from, const std::string& to);
  void add_route(const std::string& type, endpoint to);
  void add_kafka_route(const std::string& type, std::string topic, cloudevents_mode mode);
  saga_definition& define_saga(const std::string& name, std::string state_type);
  void add_saga_handler(const saga_definition& saga, const std::string& type, invoker call);
  error_policies& handler_policies(const std::string& type) { return type_policies_[type]; }
  error_policies& queue_policies(const std::string& queue) { return queue_policies_[queue]; }
  /// Where middleware applies: every handler, the handlers of a queue, the handler of a type.
  enum class scope { application, queue, handler };
  void add_middleware(scope where, std::string name, middleware m);

private:
  void add_handler(const std::string& queue, const std::string& type, invoker call);
  void add_validator(const std::string& type, std::function<void(std::string_view)> check);

  struct scoped_middleware {
    scope where;
    std::string name; ///< of the queue or message type; empty for the application
    middleware m;
  };

  std::deque<queue_definition> queues_;      // deque: definitions keep their address
  std::deque<scoped_middleware> middleware_; // deque: chains point into it
  /// message type → its validators (routing::validate), and the middleware that runs them
  std::unordered_map<std::string, std::vector<std::function<void(std::string_view)>>>
    field_validators_;
  std::unordered_map<std::string, middleware> validation_;
  error_policies app_policies_;
  bool all_faults_ = false;
  std::set<std::string, std::less<>> fault_types_;
  std::map<std::string, error_policies, std::less<>> queue_policies_; // queue name → rules
  std::map<std::string, error_policies, std::less<>> type_policies_;  // message type → rules
  std::unordered_map<std::string, std::vector<endpoint>> routes_;     // message type → endpoints
  std::vector<kafka_topic_settings> topics_;                          // sorted by name
  std::deque<kafka_listener> listeners_; // deque: the builder's reference stays valid
  std::deque<saga_definition> sagas_;    // deque: queues and handlers point to them
  /// message type → check of a body, returning its key
  std::unordered_map<std::string, std::function<std::string(std::string_view)>> validators_;
};

} // namespace depot
