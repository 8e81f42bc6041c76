// cluster status: every registered node, where its node actor listens, what it serves, whom it
// is connected to, and which one leads. cluster drain: one node finishes and stops, asked over
// CAF. request: a query answered by a node that serves it, asked over CAF. queues pause |
// resume: a durable pause every node serving the queue honours.
#include "cluster_commands.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <fmt/format.h>

#include "cluster.hpp"
#include "depot/persistence/inbox.hpp"
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
DEPOT_MESSAGE(node_line, "depot.node-line", number, uri, started, heartbeat, queues, peers, leader,
              health, version)

std::string list_or_dash(const auto& items) {
  return items.empty() ? "-" : fmt::format("{}", fmt::join(items, ","));
}

/// How long `queues pause` pauses: until resumed.
constexpr micros until_resumed = 253'402'300'799'000'000; // 9999-12-31T23:59:59Z

const queue_definition& queue_named(const routing& app, const std::string& name) {
  if (const auto* q = app.find_queue(name))
    return *q;
  std::vector<std::string> names;
  for (const auto& q : app.queues())
    names.push_back(q.name);
  throw usage_error{
    fmt::format("no queue '{}' (this application has: {})", name, fmt::join(names, ", "))};
}

/// The registered node `number`, if any.
std::optional<persistence::cluster_member> member(persistence::connection& store, int number) {
  for (auto& m : persistence::node_registry{store}.members())
    if (m.number == number)
      return std::move(m);
  return std::nullopt;
}

/// A short-lived client of the cluster: an actor system with CAF's middleman, no node actor.
class cluster_client {
public:
  /// Over TLS when `settings` ask for it, presenting their certificate.
  explicit cluster_client(const node_settings& settings) : tls_(settings.cluster_tls()) {
    load_cluster_modules(config_, settings);
    system_ = std::make_unique<caf::actor_system>(config_);
  }

  /// The node actor of `m`; throws with a one-line reason when it cannot be reached.
  caf::actor node_actor(const persistence::cluster_member& m) {
    std::string host;
    std::uint16_t port = 0;
    if (!split_uri(m.presence.uri, host, port))
      throw std::runtime_error{
        fmt::format("node {} has no cluster address (uri '{}')", m.number, m.presence.uri)};
    auto peer = remote_node_actor(*system_, host, port, tls_);
    if (!peer)
      throw std::runtime_error{fmt::format("cannot reach node {} at {}: {}", m.number,
                                           m.presence.uri, system_->render(peer.error()))};
    return *peer;
  }

  [[nodiscard]] caf::actor_system& system() { return *system_; }

private:
  bool tls_;
  caf::actor_system_config config_;
  std::unique_ptr<caf::actor_system> system_;
};

/// Asks node `m` over CAF to drain; throws when it did not take the request.
void ask_to_drain(const node_settings& settings, const persistence::cluster_member& m) {
  cluster_client client{settings};
  auto peer = client.node_actor(m);
  std::string failure;
  caf::scoped_actor self{client.system()};
  self->request(peer, std::chrono::seconds{5}, drain_atom::value)
    .receive([](caf::ok_atom) {},
             [&](caf::error& e) {
               failure = fmt::format("node {} did not take the drain request: {}", m.number,
                                     client.system().render(e));
             });
  if (!failure.empty())
    throw std::runtime_error{failure};
}

/// The registered nodes that serve `queue` and can be reached over CAF.
std::vector<persistence::cluster_member> servers_of(persistence::connection& store,
                                                    const std::string& queue) {
  auto members = persistence::node_registry{store}.members();
  std::erase_if(members, [&](const persistence::cluster_member& m) {
    const auto& served = m.presence.queues;
    return m.presence.uri.empty() || std::find(served.begin(), served.end(), queue) == served.end();
  });
  return members;
}

/// Sends request `body` of `type` to one of `servers` over CAF and returns the reply's body;
/// throws with a one-line reason on a timeout or when no server can be reached.
std::string ask(const node_settings& settings,
                const std::vector<persistence::cluster_member>& servers, const std::string& type,
                const std::string& body, std::chrono::seconds timeout) {
  cluster_client client{settings};
  std::string unreachable;
  for (const auto& m : servers) {
    caf::actor peer;
    try {
      peer = client.node_actor(m);
    } catch (const std::runtime_error& e) {
      unreachable = e.what(); // try the next one
      continue;
    }
    std::string reply, failure;
    caf::scoped_actor self{client.system()};
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    // The node gives up first and says why; this timeout only covers a node that went away.
    self
      ->request(peer, waited + std::chrono::seconds{2}, ask_atom::value, type, body,
                static_cast<std::int64_t>(waited.count()))
      .receive(
        [&](std::string&, std::string& reply_body, std::string& why) {
          reply = std::move(reply_body);
          failure = std::move(why);
        },
        [&](caf::error& e) {
          failure =
            fmt::format("node {} did not answer {}: {}", m.number, type, client.system().render(e));
        });
    if (!failure.empty())
      throw std::runtime_error{fmt::format("node {}: {}", m.number, failure)};
    return reply;
  }
  throw std::runtime_error{unreachable};
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
           fmt::print("{}\n",
                      to_json(node_line{m.number, p.uri, iso8601(m.started), iso8601(m.heartbeat),
                                        m.health, m.version, p.queues, p.peers, m.leader}));
         else
           fmt::print("{:<7} {:<6} {:<22} {:<27} {:<27} {:<20} {}\n", m.number,
                      m.leader ? "yes" : "", p.uri.empty() ? "-" : p.uri, iso8601(m.started),
                      iso8601(m.heartbeat), list_or_dash(p.peers), list_or_dash(p.queues));
       }
       if (!*json && members.empty())
         fmt::print("no node is running\n");
       return exit_code::ok;
     }});
  auto timeout = std::make_shared<std::int64_t>(60);
  commands.push_back(
    {{"cluster", "drain"},
     "<node>",
     "ask node <node> (its number) to finish what it holds, stop claiming and exit 0; waits "
     "until it has stopped",
     [timeout](command_options& o) {
       o.add(*timeout, "timeout", "seconds to wait for the node to stop (default 60)");
     },
     [open, timeout](command_env& env) {
       if (env.args.size() != 1)
         throw usage_error{"cluster drain takes <node>, a node number (see cluster status)"};
       int number = 0;
       try {
         number = std::stoi(env.args[0]);
       } catch (const std::exception&) {
         throw usage_error{fmt::format("cluster drain: '{}' is not a node number", env.args[0])};
       }
       auto store = open(env.settings);
       auto m = member(*store, number);
       if (!m)
         throw std::runtime_error{fmt::format("no node {} is running", number)};
       ask_to_drain(env.settings, *m);
       auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{*timeout};
       while (member(*store, number)) {
         if (std::chrono::steady_clock::now() >= deadline)
           throw std::runtime_error{
             fmt::format("node {} was asked to drain but still runs after {} s", number, *timeout)};
         std::this_thread::sleep_for(std::chrono::milliseconds{100});
       }
       fmt::print("node {} drained and stopped\n", number);
       return exit_code::ok;
     }});
  auto wait = std::make_shared<std::int64_t>(5);
  commands.push_back(
    {{"request"},
     "<type> <json>",
     "send a request to a running node that serves <type> and print its reply's JSON; exit 1 "
     "when no node serves it or no reply comes in time",
     [wait](command_options& o) {
       o.add(*wait, "timeout", "seconds to wait for the reply (default 5)");
     },
     [open, wait](command_env& env) {
       if (env.args.size() != 2)
         throw usage_error{"request takes <type> and <json>"};
       const auto& type = env.args[0];
       const auto& body = env.args[1];
       if (*wait < 1)
         throw usage_error{"request: --timeout takes a number of seconds, at least 1"};
       env.app.validate(type, body); // bad input never leaves this process
       auto queues = env.app.subscribers_of(type);
       if (queues.empty())
         throw std::runtime_error{fmt::format("no queue of this application handles {}", type)};
       const auto& queue = queues.front()->name;
       auto store = open(env.settings);
       auto servers = servers_of(*store, queue);
       if (servers.empty())
         throw std::runtime_error{fmt::format("no running node serves {} (queue {})", type, queue)};
       fmt::print("{}\n", ask(env.settings, servers, type, body, std::chrono::seconds{*wait}));
       return exit_code::ok;
     }});
  auto reason = std::make_shared<std::string>("paused by an operator");
  commands.push_back(
    {{"queues", "pause"},
     "<queue>",
     "stop every node claiming from <queue> until it is resumed (durable: a node that starts "
     "later honours it)",
     [reason](command_options& o) { o.add(*reason, "reason", "why, shown by storage counts"); },
     [open, reason](command_env& env) {
       if (env.args.size() != 1)
         throw usage_error{"queues pause takes <queue>"};
       const auto& q = queue_named(env.app, env.args[0]);
       auto store = open(env.settings);
       persistence::inbox{*store}.pause_queue(q.name, until_resumed, *reason);
       fmt::print("queue {} paused on every node until resumed\n", q.name);
       return exit_code::ok;
     }});
  commands.push_back(
    {{"queues", "resume"},
     "<queue>",
     "let every node serving <queue> claim from it again (also ends a pause an error policy "
     "set)",
     {},
     [open](command_env& env) {
       if (env.args.size() != 1)
         throw usage_error{"queues resume takes <queue>"};
       const auto& q = queue_named(env.app, env.args[0]);
       auto store = open(env.settings);
       persistence::inbox inbox{*store};
       if (!inbox.resume_queue(q.name)) {
         fmt::print("queue {} was not paused\n", q.name);
         return exit_code::ok;
       }
       inbox.notify_ready({q.name}, 0); // the nodes serving it claim at once
       fmt::print("queue {} resumed\n", q.name);
       return exit_code::ok;
     }});
  return commands;
}

} // namespace depot
