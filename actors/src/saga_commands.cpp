// sagas list | show | cancel: what an operator sees of long-running processes, and how one is
// stopped (its compensation starts).
#include "saga_commands.hpp"

#include <fmt/format.h>

#include "depot/persistence/saga_store.hpp"
#include "depot/transports/local.hpp"

namespace depot {

namespace {

using persistence::saga_summary;

/// "3d 4h", "2h 5min", "4min 10s", "12s": how long ago `since` was.
std::string age(micros since) {
  auto s = std::max<micros>(0, (now_micros() - since) / 1'000'000);
  if (s >= 86'400)
    return fmt::format("{}d {}h", s / 86'400, s % 86'400 / 3600);
  if (s >= 3600)
    return fmt::format("{}h {}min", s / 3600, s % 3600 / 60);
  if (s >= 60)
    return fmt::format("{}min {}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

/// One line of `sagas list --json`.
struct saga_line {
  std::string type, id, status, reason, created, updated;
  std::int64_t age_s = 0;
  std::int64_t pending_compensations = 0;
};
DEPOT_MESSAGE(saga_line, "depot.saga-line", type, id, status, reason, created, updated, age_s,
              pending_compensations)

std::string json_line(const saga_summary& s) {
  return depot::to_json(saga_line{s.type, s.id, to_string(s.status), s.reason, iso8601(s.created),
                                  iso8601(s.updated), (now_micros() - s.created) / 1'000'000,
                                  static_cast<std::int64_t>(s.pending_compensations)});
}

/// The saga the command names, or nullopt after saying on stderr that there is none.
std::optional<saga_row> find_saga(persistence::connection& store, const saga_definition& saga,
                                  const std::string& id) {
  auto row = persistence::saga_store{store}.find(saga, id);
  if (!row)
    fmt::print(stderr, "no saga {} {}\n", saga.name, id);
  return row;
}

const saga_definition& saga_named(const routing& app, const std::string& name) {
  if (const auto* saga = app.find_saga(name))
    return *saga;
  std::vector<std::string> names;
  for (const auto& s : app.sagas())
    names.push_back(s.name);
  throw usage_error{
    fmt::format("no saga type '{}' (this node has: {})", name,
                names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", ")))};
}

void show(const saga_definition& saga, const saga_row& row) {
  auto field = [](const char* name, const std::string& value) {
    fmt::print("{:<14} {}\n", name, value.empty() ? "-" : value);
  };
  field("type", saga.name);
  field("id", row.id);
  field("status", to_string(row.status));
  field("reason", row.reason);
  field("created", iso8601(row.created));
  field("updated", iso8601(row.updated));
  field("version", std::to_string(row.version));
  if (row.keep_until != 0)
    field("kept until", iso8601(row.keep_until));
  field("state", row.state);
  fmt::print("pending compensations (run last first):\n");
  if (row.compensations.empty())
    fmt::print("  none\n");
  for (auto c = row.compensations.rbegin(); c != row.compensations.rend(); ++c)
    fmt::print("  {}  {}  (recorded by {})\n", c->type, c->body, c->step);
  fmt::print("pending timeouts:\n");
  if (row.timeouts.empty())
    fmt::print("  none\n");
  for (const auto& t : row.timeouts)
    fmt::print("  {}  due {}{}\n", t.type, iso8601(t.at),
               t.until.empty() ? "" : fmt::format("  (ended by {})", fmt::join(t.until, ", ")));
  fmt::print("steps:\n");
  for (const auto& s : row.steps)
    fmt::print("  {}  {:<12} {}  {}{}\n", iso8601(s.at), s.kind, s.type, s.envelope_id,
               s.note.empty() ? "" : "  " + s.note);
}

} // namespace

std::vector<command> saga_commands(store_opener open) {
  struct list_options {
    std::string type, status;
    std::int64_t limit = 100;
    bool json = false;
  };
  auto list = std::make_shared<list_options>();
  auto reason = std::make_shared<std::string>();
  std::vector<command> commands;
  commands.push_back(
    {{"sagas", "list"},
     "",
     "sagas with their type, id, status and age, the latest updated first",
     [list](command_options& o) {
       o.add(list->type, "type", "only sagas of this type");
       o.add(list->status, "status",
             "only sagas in this status: running, completed, compensating, compensated, stuck");
       o.add(list->limit, "limit", "at most this many (default 100)");
       o.add(list->json, "json", "one JSON object per line");
     },
     [open, list](command_env& env) {
       if (!env.args.empty())
         throw usage_error{"sagas list takes no arguments (filter with --type, --status)"};
       const saga_definition* type =
         list->type.empty() ? nullptr : &saga_named(env.app, list->type);
       std::optional<saga_status> status;
       if (!list->status.empty() && !(status = saga_status_from(list->status)))
         throw usage_error{
           fmt::format("--status {}: use running, completed, compensating, "
                       "compensated or stuck",
                       list->status)};
       if (list->limit < 1)
         throw usage_error{"--limit must be at least 1"};
       auto store = open(env.settings);
       auto sagas = persistence::saga_store{*store}.list(env.app.sagas(), type, status,
                                                         static_cast<int>(list->limit));
       if (!list->json)
         fmt::print("{:<16} {:<40} {:<13} {:<12} {}\n", "type", "id", "status", "age", "reason");
       for (const auto& s : sagas) {
         if (list->json)
           fmt::print("{}\n", json_line(s));
         else
           fmt::print("{:<16} {:<40} {:<13} {:<12} {}\n", s.type, s.id, to_string(s.status),
                      age(s.created), s.reason);
       }
       return exit_code::ok;
     }});
  commands.push_back({{"sagas", "show"},
                      "<type> <id>",
                      "a saga's state, pending compensations and timeouts, and its steps",
                      {},
                      [open](command_env& env) {
                        if (env.args.size() != 2)
                          throw usage_error{"sagas show takes <type> <id>"};
                        const auto& saga = saga_named(env.app, env.args[0]);
                        auto store = open(env.settings);
                        auto row = find_saga(*store, saga, env.args[1]);
                        if (!row)
                          return exit_code::failure;
                        show(saga, *row);
                        return exit_code::ok;
                      }});
  commands.push_back(
    {{"sagas", "cancel"},
     "<type> <id>",
     "start a running saga's compensation (a durable request its queue handles)",
     [reason](command_options& o) { o.add(*reason, "reason", "why, recorded with the saga"); },
     [open, reason](command_env& env) {
       if (env.args.size() != 2)
         throw usage_error{"sagas cancel takes <type> <id>"};
       const auto& saga = saga_named(env.app, env.args[0]);
       auto store = open(env.settings);
       auto row = find_saga(*store, saga, env.args[1]);
       if (!row)
         return exit_code::failure;
       if (row->status != saga_status::running) {
         fmt::print(stderr, "saga {} {} is {}: only a running saga can be cancelled\n", saga.name,
                    row->id, to_string(row->status));
         return exit_code::failure;
       }
       send_durably(*store, env.app, env.settings.service, 0, saga.cancel_type(),
                    {to_json(saga_signal{row->id, *reason})}, {}, 0, dispatch::send);
       fmt::print("saga {} {}: cancel sent; its compensation starts when a node handles it\n",
                  saga.name, row->id);
       return exit_code::ok;
     }});
  return commands;
}

} // namespace depot
