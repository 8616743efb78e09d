// zk0 privacy epsilon --sampling-rate Q --noise-multiplier Z --rounds T --delta D [--orders A,B,...]
// zk0 privacy noise --sampling-rate Q --target-epsilon E --rounds T --delta D [--orders A,B,...]
//
// The accountant the aggregator runs under strategy.privacy (core/privacy/rdp_accountant.h), for
// planning a run and for checking it against other accountants: epsilon after T rounds, or the
// least noise multiplier that keeps T rounds within epsilon. Prints one JSON object; `batch` answers
// one JSON query per line of its input.
#include "cli/privacy_command.h"

#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>

#include "core/privacy/rdp_accountant.h"
#include "core/util/exit_codes.h"

namespace zk0 {

namespace {

int usage() {
  std::cerr << "usage: zk0 privacy epsilon --sampling-rate Q --noise-multiplier Z --rounds T --delta D [--orders A,B,...]\n"
               "       zk0 privacy noise --sampling-rate Q --target-epsilon E --rounds T --delta D [--orders A,B,...]\n"
               "       zk0 privacy batch   < queries.jsonl   (one {\"query\": \"epsilon\"|\"noise\", \"sampling_rate\", ...} per line)\n";
  return kExitInvalidInput;
}

double number(const nlohmann::json& query, const std::string& name) {
  if (!query.contains(name)) throw std::invalid_argument(name + " is required");
  const auto& v = query.at(name);
  if (v.is_number()) return v.get<double>();
  if (!v.is_string()) throw std::invalid_argument(name + ": not a number");
  const std::string text = v.get<std::string>();
  size_t used = 0;
  double out = 0;
  try {
    out = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) throw std::invalid_argument(name + ": cannot read '" + text + "' as a number");
  return out;
}

std::vector<double> orders_of(const nlohmann::json& query) {
  if (!query.contains("orders")) return default_rdp_orders();
  std::vector<double> out;
  const auto& given = query.at("orders");
  if (given.is_array()) {
    for (const auto& a : given) out.push_back(number({{"orders", a}}, "orders"));
  } else {
    std::stringstream in(given.get<std::string>());
    for (std::string item; std::getline(in, item, ',');) out.push_back(number({{"orders", item}}, "orders"));
  }
  if (out.empty()) throw std::invalid_argument("orders: at least one order");
  for (double a : out)
    if (!(a > 1)) throw std::invalid_argument("orders: every order must be above 1");
  return out;
}

nlohmann::json answer(const nlohmann::json& query) {
  const std::string what = query.value("query", "");
  const double q = number(query, "sampling_rate"), delta = number(query, "delta"), rounds = number(query, "rounds");
  if (!(rounds >= 1) || rounds != static_cast<double>(static_cast<long>(rounds)))
    throw std::invalid_argument("rounds must be a whole number of at least 1");
  const std::vector<double> orders = orders_of(query);
  if (what == "epsilon") {
    RdpAccountant accountant(orders);
    accountant.record(q, number(query, "noise_multiplier"), static_cast<long>(rounds));
    const PrivacySpent spent = accountant.spent(delta);
    return {{"epsilon", spent.epsilon}, {"order", spent.order}};
  }
  if (what == "noise")
    return {{"noise_multiplier", noise_multiplier_for(number(query, "target_epsilon"), delta, q, static_cast<long>(rounds), 1e4, orders)}};
  throw std::invalid_argument("query must be epsilon or noise (got '" + what + "')");
}

}  // namespace

int privacy_command(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string what = argv[1];
  if (what == "batch") {
    // One process for many queries: a grid costs no more than its arithmetic.
    int line_number = 0;
    for (std::string line; std::getline(std::cin, line);) {
      ++line_number;
      if (line.empty()) continue;
      try {
        std::cout << answer(nlohmann::json::parse(line)).dump() << "\n";
      } catch (const std::exception& e) {
        std::cerr << "zk0 privacy batch: line " << line_number << ": " << e.what() << "\n";
        return kExitInvalidInput;
      }
    }
    return 0;
  }
  if (what != "epsilon" && what != "noise") return usage();
  nlohmann::json query = {{"query", what}};
  for (int i = 2; i < argc; i += 2) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || i + 1 >= argc) return usage();
    key = key.substr(2);
    for (char& c : key)
      if (c == '-') c = '_';
    query[key] = argv[i + 1];
  }
  try {
    std::cout << answer(query).dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "zk0 privacy " << what << ": " << e.what() << "\n";
    return kExitInvalidInput;
  }
}

}  // namespace zk0
