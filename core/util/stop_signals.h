#pragma once
// SIGINT and SIGTERM delivered to one thread, which logs them and calls the program's stop. Make
// it first thing in main, before any thread starts, so that every thread inherits the blocked
// mask and no signal lands in a thread that would die of it.
#include <signal.h>

#include <functional>
#include <thread>

namespace zk0 {

class StopSignals {
 public:
  StopSignals();   // blocks SIGINT and SIGTERM (and SIGUSR1, the watcher's own wake-up)
  ~StopSignals();  // ends the watcher
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // Starts the watcher: the first SIGINT or SIGTERM calls `stop` (once).
  void on_stop(std::function<void()> stop);
  // Ends the watcher; call it before whatever `stop` touches is destroyed.
  void disarm();

 private:
  sigset_t signals_;
  std::thread watcher_;
};

}  // namespace zk0
