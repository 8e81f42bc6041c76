// The supervisor actor and the failure record behind a node's health.
#include "supervisor.hpp"

#include <caf/all.hpp>

#include "depot/runtime/failure_policy.hpp"
#include "depot/runtime/log.hpp"
#include "depot/runtime/settings.hpp"

namespace depot {

namespace {

using restart_atom = caf::atom_constant<caf::atom("restart")>;

constexpr std::chrono::milliseconds first_backoff{100};
constexpr std::chrono::milliseconds max_backoff{5000};

// The reason an actor ended with: the text fail_on_exception() put in, else CAF's rendering.
std::string reason_of(caf::actor_system& system, const caf::error& reason) {
  const auto& context = reason.context();
  if (context.match_elements<std::string>())
    return context.get_as<std::string>(0);
  return system.render(reason);
}

struct supervisor_state {
  std::vector<supervised> actors;
  std::vector<caf::actor> current; // by index into actors
  std::shared_ptr<failure_record> record;
  static inline const char* name = "depot.supervisor";
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

void start(supervisor_actor* self, std::size_t i) {
  auto& st = self->state;
  auto a = st.actors[i].spawn(self->system());
  self->monitor(a);
  st.current[i] = a;
  if (st.actors[i].publish)
    st.actors[i].publish(a);
}

void on_down(supervisor_actor* self, const caf::down_msg& down) {
  auto& st = self->state;
  std::size_t i = 0;
  while (i < st.current.size() && st.current[i].address() != down.source)
    ++i;
  if (i == st.current.size() || down.reason == caf::exit_reason::user_shutdown)
    return;
  st.current[i] = caf::actor{};
  const auto& label = st.actors[i].label;
  auto reason = reason_of(self->system(), down.reason);
  auto count = st.record->add(label, reason);
  auto window = show_duration(st.record->window());
  if (count > st.record->max_restarts()) {
    auto text = fmt::format("{} failed {} time(s) within {}, more than max-restarts {}: {}", label,
                            count, window, st.record->max_restarts(), reason);
    log(log_level::error, "{}; the node stops", text);
    st.record->fail(std::move(text));
    return;
  }
  auto backoff = first_backoff;
  for (int k = 1; k < count && backoff < max_backoff; ++k)
    backoff *= 2;
  backoff = std::min(backoff, max_backoff);
  log(log_level::error, "{} failed ({} time(s) within {}): {}; restarting in {}", label, count,
      window, reason, show_duration(backoff));
  self->delayed_send(self, backoff, restart_atom::value, static_cast<std::uint64_t>(i));
}

caf::behavior supervisor(supervisor_actor* self, std::vector<supervised> actors,
                         std::shared_ptr<failure_record> record) {
  auto& st = self->state;
  st.actors = std::move(actors);
  st.current.resize(st.actors.size());
  st.record = std::move(record);
  self->set_down_handler([self](caf::down_msg& down) { on_down(self, down); });
  self->set_exit_handler([self](caf::exit_msg& exit) {
    for (auto& a : self->state.current)
      if (a)
        self->send_exit(a, exit.reason);
    self->quit(exit.reason);
  });
  for (std::size_t i = 0; i < st.actors.size(); ++i)
    start(self, i);
  return {
    [self](restart_atom, std::uint64_t i) {
      log(log_level::info, "{}: restarted", self->state.actors[i].label);
      start(self, static_cast<std::size_t>(i));
    },
  };
}

} // namespace

failure_record::failure_record(int max_restarts, std::chrono::milliseconds window)
  : max_restarts_(max_restarts), window_(window) {}

int failure_record::add(const std::string& label, const std::string& reason) {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard guard{mutex_};
  auto& f = by_actor_[label];
  f.times.push_back(now);
  while (now - f.times.front() > window_)
    f.times.pop_front();
  f.last_reason = reason;
  return static_cast<int>(f.times.size());
}

void failure_record::fail(std::string reason) {
  std::lock_guard guard{mutex_};
  fatal_ = std::move(reason);
}

node_health failure_record::health() const {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard guard{mutex_};
  if (!fatal_.empty())
    return {node_health::state::failed, fatal_};
  for (const auto& [label, f] : by_actor_) {
    auto recent =
      std::count_if(f.times.begin(), f.times.end(), [&](auto t) { return now - t <= window_; });
    if (recent > 1)
      return {node_health::state::unhealthy,
              fmt::format("{} failed {} times within {}: {}", label, recent, show_duration(window_),
                          f.last_reason)};
  }
  return {};
}

void fail_on_exception(caf::scheduled_actor* self, std::function<void()> give_back) {
  self->set_exception_handler(
    [give_back = std::move(give_back)](caf::scheduled_actor*, std::exception_ptr& error) {
      if (give_back) {
        try {
          give_back();
        } catch (const std::exception& e) {
          log(log_level::warning, "could not give back what a failed actor held: {}", e.what());
        }
      }
      try {
        std::rethrow_exception(error);
      } catch (const depot::error& e) {
        return make_error(e.code(), describe(error));
      } catch (...) {
        return caf::make_error(caf::sec::runtime_error, describe(error));
      }
    });
}

caf::error make_error(errc code, std::string reason) {
  return caf::error{static_cast<std::uint8_t>(code), caf::atom("depot"),
                    caf::make_message(std::move(reason))};
}

caf::actor spawn_supervisor(caf::actor_system& system, std::vector<supervised> actors,
                            std::shared_ptr<failure_record> record) {
  return system.spawn(supervisor, std::move(actors), std::move(record));
}

} // namespace depot
