// The node actor: connections to the peers, their monitoring and reconnection.
#include "cluster.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>
#include <set>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <fmt/format.h>

#include "depot/runtime/log.hpp"

namespace depot {

persistence::node_presence cluster_view::presence() const {
  std::lock_guard guard{mutex_};
  return presence_;
}

void cluster_view::set_uri(std::string uri) {
  std::lock_guard guard{mutex_};
  presence_.uri = std::move(uri);
}

void cluster_view::set_queues(std::vector<std::string> queues) {
  std::lock_guard guard{mutex_};
  presence_.queues = std::move(queues);
}

void cluster_view::set_peers(std::vector<int> peers) {
  std::lock_guard guard{mutex_};
  presence_.peers = std::move(peers);
}

caf::actor cluster_view::node_actor() const {
  std::lock_guard guard{mutex_};
  return node_actor_;
}

void cluster_view::set_node_actor(caf::actor a) {
  std::lock_guard guard{mutex_};
  node_actor_ = std::move(a);
}

bool split_uri(const std::string& uri, std::string& host, std::uint16_t& port) {
  auto colon = uri.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == uri.size())
    return false;
  const auto* first = uri.data() + colon + 1;
  const auto* last = uri.data() + uri.size();
  auto [end, ec] = std::from_chars(first, last, port);
  if (ec != std::errc{} || end != last || port == 0)
    return false;
  host = uri.substr(0, colon);
  return true;
}

namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds first_retry{200};
constexpr milliseconds max_retry{10'000};
constexpr std::chrono::seconds connect_timeout{5};

/// One other node, as this node's node actor sees it.
struct peer_link {
  std::string uri;
  std::vector<std::string> queues; ///< those it serves
  caf::actor handle;               ///< its node actor, null while not connected
  bool connecting = false;
  clock::time_point next_try{};
  milliseconds backoff{0};
};

struct node_actor_state {
  int number = 0;
  std::shared_ptr<cluster_view> view;
  node_hooks hooks;
  std::map<int, peer_link> peers; ///< by node number
  std::size_t turn = 0;           ///< spreads buffered envelopes over the peers serving a queue
  bool tls = false;               ///< connect through CAF's OpenSSL module
  static inline const char* name = "depot.node";
};

using node_actor = caf::stateful_actor<node_actor_state>;

/// Tells the view whom this node is connected to.
void publish_peers(node_actor* self) {
  std::vector<int> connected;
  for (const auto& [n, p] : self->state.peers)
    if (p.handle)
      connected.push_back(n);
  self->state.view->set_peers(std::move(connected));
}

void adopt(node_actor* self, int number, peer_link& p, caf::actor handle) {
  if (p.handle)
    return; // connected both ways: one handle is enough
  p.handle = std::move(handle);
  p.backoff = milliseconds{0};
  self->monitor(p.handle);
  log(log_level::info, "cluster: node {} connected to node {} ({})", self->state.number, number,
      p.uri.empty() ? "inbound" : p.uri);
  publish_peers(self);
}

void retry_later(peer_link& p) {
  p.connecting = false;
  p.backoff = std::min(max_retry, std::max(first_retry, p.backoff * 2));
  p.next_try = clock::now() + p.backoff;
}

void connect(node_actor* self, int number) {
  auto& p = self->state.peers[number];
  std::string host;
  std::uint16_t port = 0;
  if (!split_uri(p.uri, host, port)) {
    retry_later(p);
    return;
  }
  p.connecting = true;
  auto& system = self->system();
  auto mm =
    self->state.tls ? system.openssl_manager().actor_handle() : system.middleman().actor_handle();
  auto uri = p.uri;
  self->request(mm, connect_timeout, caf::connect_atom_v, std::move(host), port)
    .then(
      [=](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
        auto i = self->state.peers.find(number);
        if (i == self->state.peers.end() || i->second.uri != uri)
          return; // it left, or came back elsewhere, meanwhile
        auto& q = i->second;
        q.connecting = false;
        if (!ptr) {
          retry_later(q);
          return;
        }
        auto a = caf::actor_cast<caf::actor>(ptr);
        self->send(a, hello_atom::value, self->state.number);
        adopt(self, number, q, std::move(a));
      },
      [=](caf::error& e) {
        auto i = self->state.peers.find(number);
        if (i == self->state.peers.end() || i->second.uri != uri)
          return;
        retry_later(i->second);
        log(log_level::debug, "cluster: node {} cannot reach node {} at {}: {}", self->state.number,
            number, uri, self->system().render(e));
      });
}

/// A connected peer that serves `queue`, taking turns among them; null when none does.
const caf::actor* server_of(node_actor* self, const std::string& queue) {
  std::vector<const caf::actor*> serving;
  for (const auto& [n, p] : self->state.peers)
    if (p.handle && std::find(p.queues.begin(), p.queues.end(), queue) != p.queues.end())
      serving.push_back(&p.handle);
  if (serving.empty())
    return nullptr;
  return serving[self->state.turn++ % serving.size()];
}

/// Answers one client request, on a thread of its own: the node's request blocks.
caf::behavior asker(caf::event_based_actor* self, node_hooks hooks) {
  return {
    [=](ask_atom, const std::string& type, std::string& body,
        std::int64_t timeout_ms) -> std::tuple<std::string, std::string, std::string> {
      self->quit();
      try {
        auto r = hooks.ask(type, std::move(body), milliseconds{timeout_ms});
        return {std::move(r.message_type), std::move(r.body), ""};
      } catch (const std::exception& e) {
        return {"", "", e.what()};
      }
    },
  };
}

caf::behavior node_actor_behavior(node_actor* self, int number, std::shared_ptr<cluster_view> view,
                                  node_hooks hooks, bool tls) {
  self->state.number = number;
  self->state.tls = tls;
  self->state.view = std::move(view);
  self->state.hooks = std::move(hooks);
  self->set_down_handler([self](const caf::down_msg& down) {
    for (auto& [n, p] : self->state.peers)
      if (p.handle && p.handle.address() == down.source) {
        log(log_level::info, "cluster: node {} lost node {}", self->state.number, n);
        p.handle = caf::actor{};
        retry_later(p);
        publish_peers(self);
      }
  });
  return {
    [=](members_atom, const std::vector<int>& numbers, const std::vector<std::string>& uris,
        std::vector<std::vector<std::string>>& queues) {
      auto& peers = self->state.peers;
      std::set<int> listed(numbers.begin(), numbers.end());
      bool changed = false;
      for (auto i = peers.begin(); i != peers.end();) {
        if (listed.contains(i->first)) {
          ++i;
          continue;
        }
        if (i->second.handle) {
          self->demonitor(i->second.handle);
          changed = true;
        }
        i = peers.erase(i); // deregistered, or declared dead
      }
      auto now = clock::now();
      for (std::size_t k = 0; k < numbers.size() && k < uris.size(); ++k) {
        auto n = numbers[k];
        if (n == self->state.number || uris[k].empty())
          continue;
        auto& p = peers[n];
        if (p.uri != uris[k]) {
          if (!p.uri.empty()) { // a new incarnation of that node
            if (p.handle) {
              self->demonitor(p.handle);
              changed = true;
            }
            p = peer_link{};
          }
          p.uri = uris[k]; // known so far only by its greeting, if at all
        }
        if (k < queues.size())
          p.queues = std::move(queues[k]);
        if (!p.handle && !p.connecting && now >= p.next_try)
          connect(self, n);
      }
      if (changed)
        publish_peers(self);
    },
    [=](peer_wake_atom, const std::vector<std::string>& queues) {
      for (const auto& [n, p] : self->state.peers) {
        if (!p.handle)
          continue; // LISTEN/NOTIFY tells it
        std::vector<std::string> served;
        for (const auto& q : queues)
          if (std::find(p.queues.begin(), p.queues.end(), q) != p.queues.end())
            served.push_back(q);
        if (!served.empty())
          self->send(p.handle, wake_atom::value, std::move(served));
      }
    },
    [=](wake_atom, const std::vector<std::string>& queues) {
      log(log_level::debug, "cluster: node {} woken over CAF for {}", self->state.number,
          fmt::join(queues, ", "));
      self->state.hooks.wake(queues);
    },
    [=](peer_buffered_atom, std::vector<envelope>& envelopes) {
      std::map<const caf::actor*, std::vector<envelope>> by_peer;
      for (auto& e : envelopes) {
        if (const auto* peer = server_of(self, e.queue))
          by_peer[peer].push_back(std::move(e));
        else
          log(log_level::warning,
              "buffered {} {} dropped: no connected node serves queue {} (see cluster status)",
              e.message_type, e.id, e.queue);
      }
      for (auto& [peer, batch] : by_peer)
        self->send(*peer, buffered_atom::value, std::move(batch));
    },
    [=](buffered_atom, std::vector<envelope>& envelopes) {
      self->state.hooks.deliver(std::move(envelopes));
    },
    [=](peer_reply_atom, reply_message& reply) {
      auto n = node_of_address(reply.reply_to);
      auto i = self->state.peers.find(n);
      if (i == self->state.peers.end() || !i->second.handle) {
        log(log_level::warning, "reply {} to {} dropped: node {} is not connected",
            reply.message_type, reply.reply_to, n);
        return;
      }
      self->send(i->second.handle, reply_atom::value, std::move(reply));
    },
    [=](reply_atom, reply_message& reply) { self->state.hooks.reply(std::move(reply)); },
    [=](ask_atom a, std::string& type, std::string& body, std::int64_t timeout_ms) {
      auto helper = self->spawn<caf::detached>(asker, self->state.hooks);
      return self->delegate(helper, a, std::move(type), std::move(body), timeout_ms);
    },
    [=](drain_atom) {
      if (!self->state.view->drain_requested.exchange(true))
        log(log_level::info, "node {}: drain requested: it finishes what it holds and stops",
            self->state.number);
      return caf::ok_atom::value;
    },
    [=](hello_atom, int peer) {
      auto sender = caf::actor_cast<caf::actor>(self->current_sender());
      if (peer != self->state.number && sender)
        adopt(self, peer, self->state.peers[peer], std::move(sender));
    },
  };
}

} // namespace

caf::actor spawn_node_actor(caf::actor_system& system, int number,
                            std::shared_ptr<cluster_view> view, node_hooks hooks, bool tls) {
  return system.spawn(node_actor_behavior, number, std::move(view), std::move(hooks), tls);
}

void load_cluster_modules(caf::actor_system_config& config, const node_settings& settings) {
  config.load<caf::io::middleman>();
  config.add_message_type<envelope>("depot.envelope");
  config.add_message_type<reply_message>("depot.reply");
  if (!settings.cluster_tls())
    return;
  config.load<caf::openssl::manager>();
  config.openssl_certificate = settings.cluster_tls_cert;
  config.openssl_key = settings.cluster_tls_key;
  config.openssl_cafile = settings.cluster_tls_ca;
}

caf::expected<std::uint16_t> publish_node_actor(const caf::actor& node_actor,
                                                const std::string& host, std::uint16_t port,
                                                bool tls) {
  if (tls)
    return caf::openssl::publish(node_actor, port, host.c_str());
  return node_actor.home_system().middleman().publish(node_actor, port, host.c_str());
}

caf::expected<caf::actor> remote_node_actor(caf::actor_system& system, const std::string& host,
                                            std::uint16_t port, bool tls) {
  if (tls)
    return caf::openssl::remote_actor(system, host, port);
  return system.middleman().remote_actor(host, port);
}

int node_of_address(const std::string& address) {
  constexpr std::string_view prefix = "node:";
  if (!address.starts_with(prefix))
    return 0;
  int n = 0;
  const auto* last = address.data() + address.size();
  auto [end, ec] = std::from_chars(address.data() + prefix.size(), last, n);
  return ec == std::errc{} && end == last ? n : 0;
}

} // namespace depot
