// Routes and handler registration; the middleware chain of each handler.
#include "depot/runtime/routing.hpp"

#include <cctype>

#include <algorithm>
#include <functional>

#include <fmt/format.h>

#include "depot/runtime/saga.hpp"

namespace depot {

namespace {

/// One step of a handler's chain, and through operator() the next: chain[i], or the handler
/// itself past the end. Passed to middleware by reference, so running a chain allocates nothing.
struct chain_cursor {
  const std::vector<const middleware*>& chain;
  std::size_t i;
  const envelope& e;
  context& ctx;
  const invoker& handler;
  void* state;

  void operator()() const {
    if (i == chain.size())
      return handler(e, ctx, state);
    chain_cursor next{chain, i + 1, e, ctx, handler, state};
    chain[i]->call(e, ctx, next_step{std::cref(next)});
  }
};

class dispatching_handler : public queue_handler {
public:
  dispatching_handler(const routing& routes, const queue_definition& q,
                      const std::unordered_map<std::string, invoker>& handlers,
                      std::shared_ptr<void> state)
    : queue_(q), state_(std::move(state)) {
    for (const auto& [type, call] : handlers)
      handlers_.emplace(type, entry{&call, routes.chain_of(q.name, type)});
  }

  void invoke(const envelope& e, context& ctx) override {
    auto i = handlers_.find(e.message_type);
    if (i == handlers_.end())
      throw unknown_message_type{fmt::format("queue '{}' has no handler for message type '{}'",
                                             queue_.name, e.message_type)};
    chain_cursor{i->second.chain, 0, e, ctx, *i->second.call, state_.get()}();
  }

private:
  struct entry {
    const invoker* call;
    std::vector<const middleware*> chain;
  };
  const queue_definition& queue_;
  std::unordered_map<std::string, entry> handlers_;
  std::shared_ptr<void> state_;
};

} // namespace

std::unique_ptr<queue_handler> routing::instantiate(const queue_definition& q,
                                                    bool fallbacks) const {
  if (fallbacks)
    return q.fallbacks.empty()
             ? nullptr
             : std::make_unique<dispatching_handler>(*this, q, q.fallbacks, nullptr);
  return std::make_unique<dispatching_handler>(*this, q, q.handlers,
                                               q.make_state ? q.make_state() : nullptr);
}

std::vector<const middleware*> routing::chain_of(std::string_view queue,
                                                 std::string_view type) const {
  struct ranked {
    const middleware* m;
    scope where;
  };
  std::vector<ranked> found;
  for (const auto& s : middleware_)
    if (s.where == scope::application || (s.where == scope::queue && s.name == queue) ||
        (s.where == scope::handler && s.name == type))
      found.push_back({&s.m, s.where});
  if (auto v = validation_.find(std::string{type}); v != validation_.end())
    found.push_back({&v->second, scope::handler});
  // By position; at one position the application's, then the queue's, then the handler's, each
  // in the order declared.
  std::stable_sort(found.begin(), found.end(), [](const ranked& a, const ranked& b) {
    return a.m->position != b.m->position ? a.m->position < b.m->position : a.where < b.where;
  });
  std::vector<const middleware*> chain;
  for (const auto& r : found)
    chain.push_back(r.m);
  return chain;
}

std::vector<std::string> routing::describe_middleware() const {
  std::vector<std::string> lines;
  for (const auto& q : queues_) {
    std::vector<std::string> types;
    for (const auto& [t, h] : q.handlers)
      types.push_back(t);
    std::sort(types.begin(), types.end());
    for (const auto& t : types) {
      std::vector<std::string> steps;
      for (const auto* m : chain_of(q.name, t))
        steps.push_back(fmt::format("{} ({})", m->name, m->position));
      steps.emplace_back("handler");
      lines.push_back(fmt::format("{} / {}: {}", q.name, t, fmt::join(steps, " > ")));
    }
  }
  return lines;
}

void routing::add_middleware(scope where, std::string name, middleware m) {
  if (!m.call)
    throw std::logic_error{fmt::format("middleware '{}' has nothing to call", m.name)};
  middleware_.push_back({where, std::move(name), std::move(m)});
}

void routing::add_validator(const std::string& type, std::function<void(std::string_view)> check) {
  auto& checks = field_validators_[type];
  checks.push_back(std::move(check));
  validation_[type] = before("validation", [checks](const envelope& e, context&) {
                        for (const auto& c : checks)
                          c(e.body);
                      }).at(stage::validation);
}

queue_builder& queue_builder::use(middleware m) {
  if (type_.empty())
    routing_.add_middleware(routing::scope::queue, queue_, std::move(m));
  else
    routing_.add_middleware(routing::scope::handler, type_, std::move(m));
  return *this;
}

queue_builder& queue_builder::circuit_breaker(breaker_settings settings) {
  if (settings.minimum_handlings < 1 || settings.failure_ratio <= 0 || settings.failure_ratio > 1 ||
      settings.window.count() <= 0 || settings.pause.count() <= 0)
    throw std::invalid_argument{fmt::format(
      "circuit breaker of {}: minimum handlings at least 1, a failure ratio in (0, 1], a window "
      "and a pause above 0",
      queue_)};
  auto& q = routing_.define_queue(queue_);
  if (type_.empty())
    q.breaker = settings;
  else
    q.handler_breakers.insert_or_assign(type_, settings);
  return *this;
}

void queue_builder::add_fallback(const std::string& type, invoker call) {
  auto& q = routing_.define_queue(queue_);
  if (!q.fallbacks.emplace(type, std::move(call)).second)
    throw std::logic_error{
      fmt::format("message type '{}' already has a fallback on queue '{}'", type, queue_)};
}

queue_builder& queue_builder::on_queue(std::string name) {
  routing_.move_handlers(queue_, name);
  queue_ = std::move(name);
  return *this;
}

queue_builder& queue_builder::buffered() {
  routing_.define_queue(queue_).mode = endpoint_mode::buffered;
  return *this;
}

queue_builder& queue_builder::concurrency(int n) {
  routing_.define_queue(queue_).concurrency = n;
  return *this;
}

error_policies& queue_builder::policies() {
  return type_.empty() ? routing_.queue_policies(queue_) : routing_.handler_policies(type_);
}

queue_builder routing::queue(const std::string& name) {
  define_queue(name);
  return queue_builder{*this, name};
}

const error_policy* routing::error_policy_for(std::string_view queue, std::string_view type,
                                              const std::exception_ptr& thrown) const {
  for (const auto* scope : {&type_policies_, &queue_policies_}) {
    auto key = scope == &type_policies_ ? type : queue;
    if (auto i = scope->find(key); i != scope->end())
      if (const auto* chain = i->second.match(thrown))
        return chain;
  }
  return app_policies_.match(thrown);
}

bool routing::publishes_faults_of(std::string_view type) const {
  if (type == type_name_of<fault>())
    return false;
  return all_faults_ || fault_types_.contains(type);
}

std::vector<std::string> routing::describe_error_policies() const {
  std::vector<std::string> lines;
  for (const auto& [type, rules] : type_policies_)
    for (const auto& r : rules.describe())
      lines.push_back(fmt::format("handler of {}: {}", type, r));
  for (const auto& [queue, rules] : queue_policies_)
    for (const auto& r : rules.describe())
      lines.push_back(fmt::format("queue {}: {}", queue, r));
  for (const auto& r : app_policies_.describe())
    lines.push_back(fmt::format("application: {}", r));
  return lines;
}

queue_definition& routing::define_queue(const std::string& name) {
  auto i = std::find_if(queues_.begin(), queues_.end(),
                        [&](const queue_definition& q) { return q.name == name; });
  if (i != queues_.end())
    return *i;
  queue_definition q;
  q.name = name;
  queues_.push_back(std::move(q));
  return queues_.back();
}

void routing::add_handler(const std::string& queue, const std::string& type, invoker call) {
  auto& q = define_queue(queue);
  if (!q.handlers.emplace(type, std::move(call)).second)
    throw std::logic_error{
      fmt::format("message type '{}' already has a handler on queue '{}'", type, queue)};
}

const saga_definition* routing::find_saga(std::string_view name) const {
  auto i = std::find_if(sagas_.begin(), sagas_.end(),
                        [&](const saga_definition& s) { return s.name == name; });
  return i == sagas_.end() ? nullptr : &*i;
}

saga_definition& routing::define_saga(const std::string& name, std::string state_type) {
  auto valid = !name.empty() && std::islower(static_cast<unsigned char>(name[0])) &&
               std::all_of(name.begin(), name.end(), [](char c) {
                 return std::islower(static_cast<unsigned char>(c)) ||
                        std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_';
               });
  if (!valid)
    throw std::logic_error{fmt::format(
      "saga name '{}': use lower case letters, digits, '-' and '_', starting with a letter", name)};
  if (find_saga(name) != nullptr || find_queue(name) != nullptr)
    throw std::logic_error{fmt::format("saga '{}': a saga or queue of that name exists", name)};
  saga_definition d;
  d.name = name;
  d.table = "saga_" + name;
  std::replace(d.table.begin(), d.table.end(), '-', '_');
  d.state_type = std::move(state_type);
  sagas_.push_back(std::move(d));
  auto& saga = sagas_.back();
  define_queue(name).saga = &saga;
  // Its internal messages: a saga_signal keyed by the saga id.
  for (const auto& type : {saga.deadline_type(), saga.cancel_type(), saga.compensated_type()}) {
    validators_[type] = [](std::string_view body) { return from_json<saga_signal>(body).saga_id; };
    add_handler(name, type, [&saga](const envelope& e, context& ctx, void*) {
      detail::run_saga_step(saga, from_json<saga_signal>(e.body).saga_id, e, ctx, nullptr);
    });
  }
  return saga;
}

void routing::add_saga_handler(const saga_definition& saga, const std::string& type, invoker call) {
  add_handler(saga.name, type, std::move(call));
}

void routing::move_handlers(const std::string& from, const std::string& to) {
  if (from == to)
    return;
  auto source = define_queue(from);
  if (source.saga != nullptr)
    throw std::logic_error{fmt::format("queue '{}' runs a saga: it keeps its name", from)};
  auto& target = define_queue(to);
  for (auto& [type, call] : source.handlers)
    if (!target.handlers.emplace(type, call).second)
      throw std::logic_error{
        fmt::format("message type '{}' already has a handler on queue '{}'", type, to)};
  if (!target.make_state)
    target.make_state = source.make_state;
  target.handler_breakers.insert(source.handler_breakers.begin(), source.handler_breakers.end());
  target.fallbacks.insert(source.fallbacks.begin(), source.fallbacks.end());
  queues_.erase(std::find_if(queues_.begin(), queues_.end(),
                             [&](const queue_definition& q) { return q.name == from; }));
}

void routing::add_route(const std::string& type, endpoint to) {
  if (to.name.empty())
    throw std::logic_error{fmt::format("a route of '{}' names no endpoint", type)};
  if (!to.local() && to.mode != endpoint_mode::durable)
    throw std::logic_error{
      fmt::format("route of '{}' to {}: a transport's endpoint is durable "
                  "(its envelopes wait in the outbox)",
                  type, to.uri())};
  routes_[type].push_back(std::move(to));
}

void routing::add_kafka_route(const std::string& type, std::string topic, cloudevents_mode mode) {
  if (topic.empty())
    topic = type.substr(0, type.find('.')) + ".events";
  auto at = std::lower_bound(
    topics_.begin(), topics_.end(), topic,
    [](const kafka_topic_settings& t, const std::string& name) { return t.name < name; });
  if (at != topics_.end() && at->name == topic) {
    if (at->mode != mode)
      throw std::logic_error{fmt::format("Kafka topic '{}' is routed to in {} and in {} mode",
                                         topic, to_string(at->mode), to_string(mode))};
  } else {
    topics_.insert(at, {topic, mode});
  }
  add_route(type, kafka_topic(std::move(topic)));
}

kafka_listener& routing::listen_to_kafka(std::vector<std::string> topics) {
  if (topics.empty() ||
      std::any_of(topics.begin(), topics.end(), [](const std::string& t) { return t.empty(); }))
    throw std::logic_error{"a Kafka listener needs at least one topic, none of them empty"};
  auto& l = listeners_.emplace_back();
  l.topics = std::move(topics);
  return l;
}

std::vector<std::pair<std::string, endpoint>> routing::routes() const {
  std::vector<std::pair<std::string, endpoint>> all;
  for (const auto& [type, endpoints] : routes_)
    for (const auto& e : endpoints)
      all.emplace_back(type, e);
  std::stable_sort(all.begin(), all.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  return all;
}

publish_builder& publish_builder::to(endpoint to) {
  routing_.add_route(type_, std::move(to));
  return *this;
}

publish_builder& publish_builder::to_kafka(std::string topic, cloudevents_mode mode) {
  routing_.add_kafka_route(type_, std::move(topic), mode);
  return *this;
}

std::vector<endpoint> routing::targets_of(std::string_view type, dispatch how) const {
  // Runs for every send of every handler: one key, one pass over the queues.
  std::string key{type};
  std::vector<endpoint> result;
  for (const auto& q : queues_) {
    if (!q.handlers.contains(key))
      continue;
    result.push_back(q.target());
    if (how == dispatch::send)
      return result;
  }
  if (auto routed = routes_.find(key); routed != routes_.end()) {
    if (how == dispatch::send)
      result.push_back(routed->second.front());
    else
      result.insert(result.end(), routed->second.begin(), routed->second.end());
  } else if (how == dispatch::send) {
    (void)route_of(type); // throws no_route
  }
  return result;
}

const queue_definition& routing::route_of(std::string_view type) const {
  for (const auto& q : queues_)
    if (q.handlers.contains(std::string{type}))
      return q;
  throw no_route{
    fmt::format("no handler for message type '{}': register one with "
                "handle<T>() or handler_actor<A, T>(), or route it with route<T>()",
                type)};
}

std::vector<const queue_definition*> routing::subscribers_of(std::string_view type) const {
  std::vector<const queue_definition*> result;
  for (const auto& q : queues_)
    if (q.handlers.contains(std::string{type}))
      result.push_back(&q);
  return result;
}

std::string routing::validate(std::string_view type, std::string_view body) const {
  std::string name{type};
  auto i = validators_.find(name);
  if (i == validators_.end()) {
    check_json_object(body);
    return {};
  }
  auto key = i->second(body);
  if (auto v = field_validators_.find(name); v != field_validators_.end())
    for (const auto& check : v->second)
      check(body);
  return key;
}

std::vector<std::string> routing::message_types() const {
  std::vector<std::string> result;
  for (const auto& [type, check] : validators_)
    result.push_back(type);
  std::sort(result.begin(), result.end());
  return result;
}

const queue_definition* routing::find_queue(std::string_view name) const {
  for (const auto& q : queues_)
    if (q.name == name)
      return &q;
  return nullptr;
}

} // namespace depot
