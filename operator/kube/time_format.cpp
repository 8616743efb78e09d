#include "operator/kube/time_format.h"

#include <cctype>
#include <ctime>
#include <iomanip>
#include <sstream>

namespace zk0::kube {

std::string rfc3339(SystemClock::time_point t, bool microseconds) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::ostringstream s;
  s << std::put_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (microseconds) s << '.' << std::setw(6) << std::setfill('0') << (us % 1000000);
  s << 'Z';
  return s.str();
}

SystemClock::time_point parse_rfc3339(const std::string& s) {
  std::tm tm{};
  std::istringstream in(s.substr(0, 19));
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) return SystemClock::time_point{};
  auto t = SystemClock::from_time_t(timegm(&tm));
  if (s.size() > 20 && s[19] == '.') {
    std::string frac;
    for (size_t i = 20; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) frac += s[i];
    t += std::chrono::microseconds(std::stoll((frac + "000000").substr(0, 6)));
  }
  return t;
}

}  // namespace zk0::kube
