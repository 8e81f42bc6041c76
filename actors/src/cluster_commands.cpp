// cluster status: every registered node, where its node actor listens, what it serves, whom it
// is connected to, and which one leads.
#include "cluster_commands.hpp"

#include <fmt/format.h>

#include "depot/persistence/node_registry.hpp"
#include "depot/runtime/message.hpp"

namespace depot {

namespace {

/// One line of `cluster status --json`.
struct node_line {
  std::int64_t number = 0;
  std::string uri, started, heartbeat, health, version;
  std::vector<std::string> queues;
  std::vector<int> peers;
  bool leader = false;
};
DEPOT_MESSAGE(node_line, "depot.node-line", number, uri, started, heartbeat, queues, peers,
              leader, health, version)

std::string list_or_dash(const auto& items) {
  return items.empty() ? "-" : fmt::format("{}", fmt::join(items, ","));
}

} // namespace

std::vector<command> cluster_commands(store_opener open) {
  std::vector<command> commands;
  auto json = std::make_shared<bool>(false);
  commands.push_back(
    {{"cluster", "status"},
     "",
     "every node of the cluster: number, uri, started, last heartbeat, queues served, "
     "connected peers; the leader marked",
     [json](command_options& o) { o.add(*json, "json", "one JSON object per node"); },
     [open, json](command_env& env) {
       auto store = open(env.settings);
       auto members = persistence::node_registry{*store}.members();
       if (!*json)
         fmt::print("{:<7} {:<6} {:<22} {:<27} {:<27} {:<20} {}\n", "node", "leader", "uri",
                    "started", "heartbeat", "peers", "queues");
       for (const auto& m : members) {
         const auto& p = m.presence;
         if (*json)
           fmt::print("{}\n", to_json(node_line{m.number, p.uri, iso8601(m.started),
                                                iso8601(m.heartbeat), m.health, m.version,
                                                p.queues, p.peers, m.leader}));
         else
           fmt::print("{:<7} {:<6} {:<22} {:<27} {:<27} {:<20} {}\n", m.number,
                      m.leader ? "yes" : "", p.uri.empty() ? "-" : p.uri, iso8601(m.started),
                      iso8601(m.heartbeat), list_or_dash(p.peers), list_or_dash(p.queues));
       }
       if (!*json && members.empty())
         fmt::print("no node is running\n");
       return exit_code::ok;
     }});
  return commands;
}

} // namespace depot
