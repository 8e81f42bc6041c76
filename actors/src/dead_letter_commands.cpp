// dead-letters list | show | replay | purge: what an operator does with failed messages.
#include "dead_letter_commands.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "depot/persistence/dead_letters.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "depot/runtime/log.hpp"

namespace depot {

namespace {

using persistence::dead_letter;
using persistence::dead_letter_filter;

/// The options of the dead-letters commands (each binds those it takes).
struct selection {
  std::string queue, type, exception, since;
  bool all = false, json = false;

  void add_filters(command_options& o) {
    o.add(queue, "queue", "only dead letters of this queue");
    o.add(type, "type", "only dead letters of this message type");
    o.add(exception, "exception", "only dead letters of this exception type");
    o.add(since, "since",
          "only dead letters that failed since this time (2026-12-01 10:00) or within this "
          "interval before now (30min, 2 hours)");
  }

  /// The options of replay and purge: the filters and --all.
  void add_selection(command_options& o) {
    add_filters(o);
    o.add(all, "all", "every dead letter");
  }

  dead_letter_filter filter(const std::vector<std::string>& ids) const {
    std::set<std::string> unique; // ids as Postgres prints them: lower case
    for (auto id : ids) {
      std::transform(id.begin(), id.end(), id.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      unique.insert(std::move(id));
    }
    return {{unique.begin(), unique.end()}, queue, type, exception, since};
  }

  /// The selection of replay and purge: ids, filters, or --all, never nothing by accident.
  dead_letter_filter chosen(const std::string& command, const std::vector<std::string>& ids) const {
    auto f = filter(ids);
    if (f.empty() && !all)
      throw usage_error{
        fmt::format("dead-letters {} takes ids, a filter (--queue, --type, "
                    "--exception, --since) or --all",
                    command)};
    if (!f.empty() && all)
      throw usage_error{fmt::format("dead-letters {}: --all takes no ids and no filter", command)};
    return f;
  }
};

std::string to_json(const dead_letter& d) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w{out};
  auto text = [&w](const char* key, const std::string& value) {
    w.Key(key);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  text("id", d.id);
  text("queue", d.queue);
  text("message_type", d.message_type);
  text("exception_type", d.exception_type);
  text("exception_message", d.exception_message);
  w.Key("attempts");
  w.Int(d.attempts);
  text("failed_at", iso8601(d.failed_at));
  text("source", d.source);
  text("message_key", d.message_key);
  text("tenant", d.tenant);
  w.Key("priority");
  w.Int(d.priority);
  w.Key("headers");
  w.RawValue(d.headers.data(), d.headers.size(), rapidjson::kObjectType);
  text("body", d.body);
  w.EndObject();
  return out.GetString();
}

void print_line(const dead_letter& d) {
  constexpr std::size_t longest_reason = 120;
  auto reason = one_line(d.exception_type + ": " + d.exception_message);
  if (reason.size() > longest_reason)
    reason = reason.substr(0, longest_reason - 3) + "...";
  fmt::print("{}  {}  {}  {}  attempts {}  {}\n", d.id, iso8601(d.failed_at), d.queue,
             d.message_type, d.attempts, reason);
}

void print_whole(const dead_letter& d) {
  auto field = [](const char* name, const std::string& value) {
    fmt::print("{:<18} {}\n", name, value.empty() ? "-" : value);
  };
  field("id", d.id);
  field("queue", d.queue);
  field("message type", d.message_type);
  field("failed at", iso8601(d.failed_at));
  field("attempts", std::to_string(d.attempts));
  field("exception type", d.exception_type);
  field("exception message", d.exception_message);
  field("source", d.source);
  field("message key", d.message_key);
  field("tenant", d.tenant);
  field("priority", std::to_string(d.priority));
  field("headers", d.headers);
  field("body", d.body);
}

/// The first of `asked` that `found` lacks, if any.
std::optional<std::string> first_missing(const std::vector<std::string>& asked,
                                         std::vector<std::string> found) {
  std::sort(found.begin(), found.end());
  for (const auto& id : asked)
    if (!std::binary_search(found.begin(), found.end(), id))
      return id;
  return std::nullopt;
}

} // namespace

std::vector<command> dead_letter_commands(store_opener open) {
  auto o = std::make_shared<selection>();
  std::vector<command> commands;
  commands.push_back({{"dead-letters", "list"},
                      "",
                      "dead letters, the latest first; --json prints one JSON object per line",
                      [o](command_options& opts) {
                        o->add_filters(opts);
                        opts.add(o->json, "json", "one JSON object per line");
                      },
                      [o, open](command_env& env) {
                        if (!env.args.empty())
                          throw usage_error{
                            "dead-letters list takes no arguments (see --help for its filters)"};
                        auto store = open(env.settings);
                        auto found = persistence::dead_letters{*store}.list(o->filter({}));
                        for (const auto& d : found) {
                          if (o->json)
                            fmt::print("{}\n", to_json(d));
                          else
                            print_line(d);
                        }
                        if (!o->json)
                          fmt::print("{} dead letter(s)\n", found.size());
                        return exit_code::ok;
                      }});
  commands.push_back(
    {{"dead-letters", "show"},
     "<id>",
     "one dead letter with its reason, headers and body",
     [o](command_options& opts) { opts.add(o->json, "json", "as one JSON object"); },
     [o, open](command_env& env) {
       if (env.args.size() != 1)
         throw usage_error{"dead-letters show takes one <id>"};
       auto store = open(env.settings);
       auto d = persistence::dead_letters{*store}.find(env.args[0]);
       if (!d)
         throw std::runtime_error{"no dead letter " + env.args[0]};
       if (o->json)
         fmt::print("{}\n", to_json(*d));
       else
         print_whole(*d);
       return exit_code::ok;
     }});
  commands.push_back(
    {{"dead-letters", "replay"},
     "[<id>...]",
     "move dead letters back to their queues as first attempts (ids, filters, or --all), in one "
     "transaction",
     [o](command_options& opts) { o->add_selection(opts); },
     [o, open](command_env& env) {
       auto filter = o->chosen("replay", env.args);
       auto store = open(env.settings);
       persistence::unit_of_work uow{*store};
       auto replayed = persistence::dead_letters{*store}.replay(filter);
       if (auto missing = first_missing(filter.ids, replayed))
         throw std::runtime_error{"no dead letter " + *missing + ": nothing replayed"};
       uow.commit();
       fmt::print("replayed {} dead letter(s)\n", replayed.size());
       return exit_code::ok;
     }});
  commands.push_back({{"dead-letters", "purge"},
                      "[<id>...]",
                      "delete dead letters for good (ids, filters, or --all)",
                      [o](command_options& opts) { o->add_selection(opts); },
                      [o, open](command_env& env) {
                        auto filter = o->chosen("purge", env.args);
                        auto store = open(env.settings);
                        persistence::unit_of_work uow{*store};
                        persistence::dead_letters dead{*store};
                        if (!filter.ids.empty()) {
                          std::vector<std::string> found;
                          for (const auto& d : dead.list(filter))
                            found.push_back(d.id);
                          if (auto missing = first_missing(filter.ids, found))
                            throw std::runtime_error{"no dead letter " + *missing +
                                                     ": nothing purged"};
                        }
                        auto purged = dead.purge(filter);
                        uow.commit();
                        fmt::print("purged {} dead letter(s)\n", purged);
                        return exit_code::ok;
                      }});
  return commands;
}

} // namespace depot
