// Routes and handler registration; the middleware pipeline.
#include "depot/runtime/routing.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace depot {

namespace {

class dispatching_handler : public queue_handler {
public:
  dispatching_handler(const queue_definition& q,
                      const std::unordered_map<std::string, invoker>& handlers,
                      std::shared_ptr<void> state)
    : queue_(q), handlers_(handlers), state_(std::move(state)) {}

  void invoke(const envelope& e, context& ctx) override {
    auto i = handlers_.find(e.message_type);
    if (i == handlers_.end())
      throw unknown_message_type{fmt::format("queue '{}' has no handler for message type '{}'",
                                             queue_.name, e.message_type)};
    i->second(e, ctx, state_.get());
  }

private:
  const queue_definition& queue_;
  const std::unordered_map<std::string, invoker>& handlers_;
  std::shared_ptr<void> state_;
};

} // namespace

std::unique_ptr<queue_handler> queue_definition::instantiate() const {
  return std::make_unique<dispatching_handler>(*this, handlers,
                                               make_state ? make_state() : nullptr);
}

std::unique_ptr<queue_handler> queue_definition::instantiate_fallback() const {
  if (fallbacks.empty())
    return nullptr;
  return std::make_unique<dispatching_handler>(*this, fallbacks, nullptr);
}

queue_builder& queue_builder::circuit_breaker(breaker_settings settings) {
  if (settings.minimum_handlings < 1 || settings.failure_ratio <= 0 || settings.failure_ratio > 1 ||
      settings.window.count() <= 0 || settings.pause.count() <= 0)
    throw std::invalid_argument{fmt::format(
      "circuit breaker of {}: minimum handlings at least 1, a failure ratio in (0, 1], a window "
      "and a pause above 0",
      queue_)};
  routing_.define_queue(queue_).breaker = settings;
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

void routing::move_handlers(const std::string& from, const std::string& to) {
  if (from == to)
    return;
  auto source = define_queue(from);
  auto& target = define_queue(to);
  for (auto& [type, call] : source.handlers)
    if (!target.handlers.emplace(type, call).second)
      throw std::logic_error{
        fmt::format("message type '{}' already has a handler on queue '{}'", type, to)};
  if (!target.make_state)
    target.make_state = source.make_state;
  queues_.erase(std::find_if(queues_.begin(), queues_.end(),
                             [&](const queue_definition& q) { return q.name == from; }));
}

void routing::run_pipeline(queue_handler& handler, const envelope& e, context& ctx) const {
  std::function<void(std::size_t)> step = [&](std::size_t i) {
    if (i == middleware_.size())
      handler.invoke(e, ctx);
    else
      middleware_[i](e, ctx, [&step, i] { step(i + 1); });
  };
  step(0);
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
  auto i = validators_.find(std::string{type});
  if (i != validators_.end())
    return i->second(body);
  check_json_object(body);
  return {};
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
