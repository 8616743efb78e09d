#pragma once
// One line per event, key=value, to stderr: `ts=... level=info component=aggregator
// event=round_completed round=3 clients=4`. Values with spaces are quoted.
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zk0 {

enum class LogLevel { Info, Warn, Error };

void set_log_component(std::string component);
// The component of this thread's lines, over the process's (a simulated client's thread).
void set_thread_log_component(std::string component);

using LogField = std::pair<std::string, std::string>;

template <typename T>
LogField kv(std::string key, const T& value) {
  std::ostringstream s;
  s << value;
  return {std::move(key), s.str()};
}

void log_event(LogLevel level, std::string_view event, const std::vector<LogField>& fields = {});
inline void log_info(std::string_view event, const std::vector<LogField>& fields = {}) {
  log_event(LogLevel::Info, event, fields);
}
inline void log_warn(std::string_view event, const std::vector<LogField>& fields = {}) {
  log_event(LogLevel::Warn, event, fields);
}
inline void log_error(std::string_view event, const std::vector<LogField>& fields = {}) {
  log_event(LogLevel::Error, event, fields);
}

}  // namespace zk0
