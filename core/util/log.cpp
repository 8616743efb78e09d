#include "core/util/log.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace zk0 {
namespace {
std::mutex log_mutex;
std::string component_name = "zk0";

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "info";
}

// A value from outside (a client's failure reason, a spec error) may carry control characters
// that forge log lines, or megabytes: escaped, and cut at kMaxValueBytes.
constexpr size_t kMaxValueBytes = 4096;

void append_value(std::string& line, const std::string& v) {
  const bool plain = !v.empty() && v.size() <= kMaxValueBytes &&
                     std::none_of(v.begin(), v.end(), [](char c) {
                       return c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
                     });
  if (plain) {
    line += v;
    return;
  }
  line += '"';
  const size_t n = std::min(v.size(), kMaxValueBytes);
  for (size_t i = 0; i < n; ++i) {
    const char c = v[i];
    switch (c) {
      case '"': line += "\\\""; break;
      case '\\': line += "\\\\"; break;
      case '\n': line += "\\n"; break;
      case '\r': line += "\\r"; break;
      case '\t': line += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
          line += hex;
        } else {
          line += c;
        }
    }
  }
  if (v.size() > n) line += "...(" + std::to_string(v.size()) + " bytes)";
  line += '"';
}
}  // namespace

thread_local std::string thread_component;

void set_thread_log_component(std::string component) { thread_component = std::move(component); }

void set_log_component(std::string component) {
  std::lock_guard<std::mutex> lock(log_mutex);
  component_name = std::move(component);
}

void log_event(LogLevel level, std::string_view event, const std::vector<LogField>& fields) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const int millis = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[80];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  std::string line = std::string("ts=") + ts + " level=" + level_name(level) + " component=";
  if (!thread_component.empty()) {
    append_value(line, thread_component);
  } else {
    std::lock_guard<std::mutex> lock(log_mutex);
    append_value(line, component_name);
  }
  line += " event=";
  line += event;
  for (const auto& [k, v] : fields) {
    line += ' ';
    line += k;
    line += '=';
    append_value(line, v);
  }
  line += '\n';
  std::lock_guard<std::mutex> lock(log_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace zk0
