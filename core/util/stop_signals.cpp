#include "core/util/stop_signals.h"

#include <pthread.h>
#include <string.h>

#include "core/util/log.h"

namespace zk0 {

StopSignals::StopSignals() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

StopSignals::~StopSignals() { disarm(); }

void StopSignals::disarm() {
  if (!watcher_.joinable()) return;
  pthread_kill(watcher_.native_handle(), SIGUSR1);
  watcher_.join();
}

void StopSignals::on_stop(std::function<void()> stop) {
  watcher_ = std::thread([this, stop = std::move(stop)] {
    int sig = 0;
    sigwait(&signals_, &sig);
    if (sig == SIGUSR1) return;
    log_info("signal_received", {kv("signal", strsignal(sig))});
    stop();
  });
}

}  // namespace zk0
