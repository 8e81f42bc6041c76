// The saga host's rules for one message of a saga, run inside the handling transaction: which
// message moves which saga, when a saga starts, completes and compensates, and which timeouts a
// step ends. The store (context::store) loads and saves the rows.
#include "depot/runtime/saga.hpp"

#include <algorithm>
#include <array>

#include "depot/runtime/log.hpp"

namespace depot {

namespace {

constexpr std::array<std::pair<saga_status, const char*>, 5> status_names{{
  {saga_status::running, "running"},
  {saga_status::completed, "completed"},
  {saga_status::compensating, "compensating"},
  {saga_status::compensated, "compensated"},
  {saga_status::stuck, "stuck"},
}};

void record_step(saga_row& row, const envelope& e, std::string kind, std::string note = {}) {
  row.steps.push_back({e.message_type, e.id, std::move(kind), now_micros(), std::move(note)});
}

/// Cancels every pending timeout of `row`.
void cancel_timeouts(saga_row& row, context& ctx) {
  for (const auto& t : row.timeouts)
    ctx.cancel(t.envelope_id);
  row.timeouts.clear();
}

/// The saga a compensation belongs to: (saga type, saga id) from its header.
std::optional<std::pair<std::string, std::string>> compensation_of(const envelope& e) {
  const auto& value = e.header_value(saga_header::compensation);
  auto slash = value.find('/');
  if (slash == std::string::npos)
    return std::nullopt;
  return std::pair{value.substr(0, slash), value.substr(slash + 1)};
}

/// Sends the last recorded compensation of `row`; the next waits until a handler reports it
/// handled. One that goes to a transport has no handler here: it is done once in the outbox.
/// With none left the saga is compensated.
void run_compensations(const saga_definition& saga, saga_row& row, context& ctx) {
  while (!row.compensations.empty()) {
    auto c = std::move(row.compensations.back());
    row.compensations.pop_back();
    send_options o;
    o.headers[saga_header::compensation] = saga.name + "/" + row.id;
    const bool handled_here = ctx.routes().targets_of(c.type, dispatch::send).front().local();
    auto id = ctx.enqueue(c.type, std::move(c.body), std::move(o), 0, dispatch::send, c.key);
    if (handled_here)
      return;
    row.steps.push_back({c.type, id, "compensation", now_micros(), "sent to a transport"});
  }
  row.status = saga_status::compensated;
  log(log_level::info, "saga {} {} compensated ({})", saga.name, row.id, row.reason);
}

void start_compensation(const saga_definition& saga, saga_row& row, std::string reason,
                        context& ctx) {
  log(log_level::info, "saga {} {} compensating: {}", saga.name, row.id, reason);
  row.status = saga_status::compensating;
  row.reason = std::move(reason);
  cancel_timeouts(row, ctx);
  run_compensations(saga, row, ctx);
}

void ignore(const saga_definition& saga, const saga_row& row, const envelope& e, const char* why) {
  log(log_level::info, "{} {} ignored: saga {} {} {}", e.message_type, e.id, saga.name, row.id,
      why);
}

} // namespace

const char* to_string(saga_status s) {
  for (const auto& [status, name] : status_names)
    if (status == s)
      return name;
  return "unknown";
}

std::optional<saga_status> saga_status_from(std::string_view text) {
  for (const auto& [status, name] : status_names)
    if (text == name)
      return status;
  return std::nullopt;
}

saga_context::saga_context(const context& base, const saga_definition& saga, saga_row& row)
  : context(base), saga_(saga), row_(row) {}

void saga_context::record_compensation(std::string_view type, std::string body, std::string key) {
  (void)routes().targets_of(type, dispatch::send); // throws no_route
  compensations_.push_back({std::string{type}, std::move(body), std::move(key), {}});
}

std::string saga_context::add_timeout(std::string_view type, std::string body, std::string key,
                                      micros after, std::vector<std::string> until) {
  if (!saga_.handled.contains(std::string{type}))
    throw std::logic_error{
      fmt::format("timeout {} of saga {}: the saga does not handle it", type, saga_.name)};
  cancel_timeout(type);
  send_options o;
  o.headers[saga_header::timeout] = saga_.name;
  auto at = now_micros() + after;
  auto id = enqueue(type, std::move(body), std::move(o), at, dispatch::send, std::move(key));
  row_.timeouts.push_back({id, std::string{type}, at, std::move(until)});
  return id;
}

void saga_context::cancel_timeout(std::string_view type) {
  std::erase_if(row_.timeouts, [&](const saga_timeout& t) {
    if (t.type != type)
      return false;
    cancel(t.envelope_id);
    return true;
  });
}

namespace detail {

void run_saga_step(const saga_definition& saga, const std::string& saga_id, const envelope& e,
                   context& ctx, const saga_call& call) {
  if (saga_id.empty())
    throw validation_error{
      fmt::format("{} names no saga: its key field (the saga id) is empty", e.message_type)};
  auto& store = ctx.store();
  auto loaded = store.load_saga(saga, saga_id);
  const bool starts = saga.starts.contains(e.message_type);
  if (!loaded) {
    if (!starts) {
      if (saga.not_found)
        saga.not_found(e, ctx);
      else
        log(log_level::info, "{} {}: saga {} {} does not exist; dropped", e.message_type, e.id,
            saga.name, saga_id);
      return;
    }
    loaded.emplace();
    loaded->id = saga_id;
  } else if (starts) {
    ignore(saga, *loaded, e, "exists: a start is done once");
    return;
  }
  auto& row = *loaded;
  const bool is_new = row.version == 0;

  if (!e.header_value(saga_header::timeout).empty()) {
    auto i = std::find_if(row.timeouts.begin(), row.timeouts.end(),
                          [&](const saga_timeout& t) { return t.envelope_id == e.id; });
    if (i == row.timeouts.end()) {
      ignore(saga, row, e, "no longer waits for this timeout");
      return;
    }
    row.timeouts.erase(i);
  }
  auto of = compensation_of(e);
  const bool compensation = of && of->first == saga.name;
  switch (row.status) {
    case saga_status::running: break;
    case saga_status::compensating:
    case saga_status::stuck:
      if (compensation || e.message_type == saga.compensated_type()) {
        if (compensation) { // one the saga runs itself
          saga_context sctx{ctx, saga, row};
          call(row.state, sctx);
          record_step(row, e, "compensation");
        } else { // one handled elsewhere is done
          row.steps.push_back(
            {from_json<saga_signal>(e.body).reason, e.id, "compensation", now_micros(), {}});
        }
        row.status = saga_status::compensating;
        run_compensations(saga, row, ctx);
        store.save_saga(saga, row);
        return;
      }
      [[fallthrough]];
    case saga_status::completed:
    case saga_status::compensated:
      ignore(saga, row, e, fmt::format("is {}", to_string(row.status)).c_str());
      return;
  }

  if (e.message_type == saga.cancel_type()) {
    record_step(row, e, "cancel");
    auto why = from_json<saga_signal>(e.body).reason;
    start_compensation(saga, row, why.empty() ? "cancelled" : "cancelled: " + why, ctx);
    store.save_saga(saga, row);
    return;
  }
  // The step ends the timeouts that guard it.
  std::erase_if(row.timeouts, [&](const saga_timeout& t) {
    if (std::find(t.until.begin(), t.until.end(), e.message_type) == t.until.end())
      return false;
    ctx.cancel(t.envelope_id);
    return true;
  });
  saga_context sctx{ctx, saga, row};
  if (e.message_type == saga.deadline_type()) {
    record_step(row, e, "timeout");
    if (!saga.on_deadline) {
      start_compensation(saga, row, "its deadline passed", ctx);
      store.save_saga(saga, row);
      return;
    }
    saga.on_deadline(row.state, sctx);
  } else {
    call(row.state, sctx);
    record_step(row, e,
                is_new                                         ? "start"
                : e.header_value(saga_header::timeout).empty() ? "step"
                                                               : "timeout");
  }
  for (auto& c : sctx.recorded()) {
    c.step = e.message_type;
    row.compensations.push_back(std::move(c));
  }
  if (is_new && saga.deadline.count() > 0) {
    send_options o;
    o.headers[saga_header::timeout] = saga.name;
    auto at = now_micros() + saga.deadline.count();
    auto id = ctx.enqueue(saga.deadline_type(), to_json(saga_signal{saga_id, {}}), std::move(o), at,
                          dispatch::send, saga_id);
    row.timeouts.push_back({id, saga.deadline_type(), at, {}});
  }
  if (const auto& reason = sctx.compensation_asked()) {
    start_compensation(saga, row, *reason, ctx);
  } else if (sctx.completing()) {
    row.status = saga_status::completed;
    cancel_timeouts(row, ctx);
    log(log_level::debug, "saga {} {} completed", saga.name, row.id);
  }
  store.save_saga(saga, row);
}

void report_compensation(const saga_definition* queue_saga, const envelope& e, context& ctx) {
  auto of = compensation_of(e);
  if (!of)
    return;
  const auto* saga = ctx.routes().find_saga(of->first);
  if (saga == nullptr || saga == queue_saga)
    return; // the saga's own compensations move it on as they run
  ctx.enqueue(saga->compensated_type(), to_json(saga_signal{of->second, e.message_type}), {}, 0,
              dispatch::send, of->second);
}

bool saga_step_failed(const saga_definition* queue_saga, const envelope& e,
                      const std::string& reason, context& ctx) {
  if (auto of = compensation_of(e)) {
    const auto* saga = ctx.routes().find_saga(of->first);
    if (saga == nullptr)
      return false;
    auto row = ctx.store().load_saga(*saga, of->second);
    if (!row || row->status != saga_status::compensating)
      return false;
    record_step(*row, e, "failed", reason);
    row->status = saga_status::stuck;
    row->reason = fmt::format("compensation {} failed: {}", e.message_type, reason);
    log(log_level::warning, "saga {} {} stuck: {}; replaying its dead letter resumes it",
        saga->name, row->id, row->reason);
    ctx.store().save_saga(*saga, *row);
    return false;
  }
  if (queue_saga == nullptr || e.key.empty())
    return false;
  const auto& saga = *queue_saga;
  auto row = ctx.store().load_saga(saga, e.key);
  if (!row || row->status != saga_status::running)
    return false;
  record_step(*row, e, "failed", reason);
  start_compensation(saga, *row, fmt::format("step {} failed: {}", e.message_type, reason), ctx);
  ctx.store().save_saga(saga, *row);
  return true;
}

} // namespace detail

} // namespace depot
