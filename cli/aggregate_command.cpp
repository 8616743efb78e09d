// zk0 aggregate FILE.yaml --global G.safetensors --update NAME=U.safetensors... --output OUT.safetensors
//               [--weight NAME=W...]
//
// For audits and re-aggregation: the spec's rule and norm bounding over updates given as files,
// checked as the coordinator checks uploads (layout, finite, spec.strategy.maxUpdateNorm), the
// result written as safetensors and each update's decision printed as JSON. Weights are the
// server's shares of the round's samples (each client's `weight` in federated_metrics.json);
// without any, every update weighs 1/n.
#include "cli/aggregate_command.h"

#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/aggregation/deltas.h"
#include "core/aggregation/strategy.h"
#include "core/spec/federation_spec.h"
#include "core/tensor/safetensors.h"
#include "core/util/exit_codes.h"

namespace zk0 {

namespace {

int usage() {
  std::cerr << "usage: zk0 aggregate FILE.yaml --global G.safetensors --update NAME=U.safetensors [--update ...]\n"
               "                     --output OUT.safetensors [--weight NAME=W ...]\n";
  return kExitInvalidInput;
}

struct InvalidInput : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::pair<std::string, std::string> split_pair(const std::string& option, const std::string& value) {
  const auto eq = value.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == value.size())
    throw InvalidInput(option + " takes NAME=VALUE (got '" + value + "')");
  return {value.substr(0, eq), value.substr(eq + 1)};
}

}  // namespace

int aggregate_command(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string spec_path = argv[1];
  std::string global_path, output_path;
  std::map<std::string, std::string> updates;  // by client name, so files go in name order
  std::map<std::string, double> weights;
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string option = argv[i];
      if (i + 1 >= argc) throw InvalidInput(option + " needs a value");
      const std::string value = argv[++i];
      if (option == "--global") {
        global_path = value;
      } else if (option == "--output") {
        output_path = value;
      } else if (option == "--update") {
        const auto [name, path] = split_pair(option, value);
        if (!updates.emplace(name, path).second) throw InvalidInput("--update: client '" + name + "' given twice");
      } else if (option == "--weight") {
        const auto [name, number] = split_pair(option, value);
        size_t used = 0;
        double w = 0;
        try {
          w = std::stod(number, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != number.size()) throw InvalidInput("--weight " + name + ": '" + number + "' is not a number");
        weights[name] = w;
      } else {
        throw InvalidInput("unknown option " + option);
      }
    }
    if (global_path.empty() || output_path.empty() || updates.empty()) throw InvalidInput("--global, --output and one --update at least are required");
    for (const auto& [name, w] : weights)
      if (!updates.count(name)) throw InvalidInput("--weight " + name + ": no --update for that client");
    if (!weights.empty() && weights.size() != updates.size()) throw InvalidInput("--weight: give one for every update or none");
  } catch (const InvalidInput& e) {
    std::cerr << "zk0 aggregate: " << e.what() << "\n";
    return usage();
  }

  FederationSpec spec;
  try {
    spec = load_spec(spec_path);
  } catch (const SpecError& e) {
    std::cerr << spec_path << ":\n" << e.what() << "\n";
    return kExitInvalidInput;
  }
  if (spec.strategy.privacy.enabled) {
    std::cerr << "zk0 aggregate: " << spec_path
              << ": spec.strategy.privacy: a differentially private round cannot be recomputed from its updates (its "
                 "Poisson sample and Gaussian noise are drawn from the OS CSPRNG and never stored)\n";
    return kExitInvalidInput;
  }
  try {
    const auto global = std::make_shared<const ParameterSet>(read_safetensors(global_path));
    const std::string scratch = (std::filesystem::absolute(output_path).parent_path() / ".zk0-aggregate-scratch").string();
    struct RemoveWhenEmpty {
      std::string dir;
      ~RemoveWhenEmpty() {
        std::error_code ignored;
        std::filesystem::remove(dir, ignored);  // only an empty folder: the round's own is gone by then
      }
    } remove_scratch{scratch};
    auto strategy = make_strategy(spec, scratch);
    auto aggregation = strategy->begin_aggregation(global);
    for (const auto& [name, path] : updates) {
      const ParameterSet update = read_safetensors(path);
      try {
        check_same_layout(update, *global, "layout");
      } catch (const std::invalid_argument& e) {
        throw InvalidInput(path + ": " + e.what() + " (the layout of " + global_path + ")");
      }
      const UpdateCheck check = check_update(update, *global, spec.strategy.max_update_norm);
      if (!check.ok()) throw InvalidInput(path + ": " + check.message);
      const double weight = weights.empty() ? 1.0 / static_cast<double>(updates.size()) : weights.at(name);
      try {
        aggregation->add(name, update, weight);
      } catch (const std::invalid_argument& e) {
        throw InvalidInput(path + ": " + e.what());
      }
    }
    AggregationResult result;
    try {
      result = aggregation->finish();
    } catch (const std::invalid_argument& e) {
      throw InvalidInput(e.what());
    }
    write_safetensors(output_path, result.parameters);
    nlohmann::json out = {{"strategy", strategy->name()}, {"rule", to_string(spec.strategy.aggregation.rule)}, {"output", output_path}};
    if (result.clip_norm) out["clip_norm"] = *result.clip_norm;
    out["updates"] = nlohmann::json::array();
    for (const auto& d : result.decisions) {
      nlohmann::json j = {{"client", d.client}, {"file", updates.at(d.client)}, {"outcome", d.outcome}};
      if (!d.reason.empty()) j["reason"] = d.reason;
      if (d.scale < 1) j["scale"] = d.scale;
      out["updates"].push_back(j);
    }
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  } catch (const InvalidInput& e) {
    std::cerr << "zk0 aggregate: " << e.what() << "\n";
    return kExitInvalidInput;
  } catch (const std::exception& e) {
    std::cerr << "zk0 aggregate: " << e.what() << "\n";
    return kExitError;
  }
}

}  // namespace zk0
