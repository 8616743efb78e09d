// zk0-attack-bench [--smoke] [--rounds N]: every attack (tests/attack/adversary.h) against every
// aggregation rule, in whole federations of real processes on loopback gRPC (small_spec's
// synthetic non-IID clients, flow-matching MLP), with 1 of 5 and 2 of 10 clients Byzantine.
// Each cell is the server's final evaluation loss over that of FedAvg on the honest clients alone,
// measured in the same run: 1.00 is no harm done; the README's goal is <= 1.10 for the robust rules.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "attack/adversary.h"
#include "attack/attacked_federation.h"
#include "support/test_support.h"

using namespace zk0::test;

namespace {

struct Rule {
  std::string label;
  std::string aggregation;  // "" for FedAvg; {f} stands for the count of attackers, {m} for n - f
  int min_clients_for(int f) const { return label == "Bulyan" ? 4 * f + 3 : 0; }
};

std::string with_counts(std::string text, int n, int f) {
  for (size_t at; (at = text.find("{f}")) != std::string::npos;) text.replace(at, 3, std::to_string(f));
  for (size_t at; (at = text.find("{m}")) != std::string::npos;) text.replace(at, 3, std::to_string(n - f));
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  int rounds = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--smoke") smoke = true;
    else if (a == "--rounds" && i + 1 < argc) rounds = std::stoi(argv[++i]);
    else {
      std::cerr << "usage: zk0-attack-bench [--smoke] [--rounds N]\n";
      return 2;
    }
  }
  const std::vector<Rule> all_rules = {
      {"FedAvg", ""},
      {"FedAvg, clipped at median norm", "clipping: {quantile: 0.5}"},
      {"median", "aggregation: {rule: median}"},
      {"trimmed mean 0.2", "aggregation: {rule: trimmedMean, trimFraction: 0.2}"},
      {"Krum", "aggregation: {rule: krum, byzantine: {f}}"},
      {"Multi-Krum", "aggregation: {rule: multiKrum, byzantine: {f}, select: {m}}"},
      {"Bulyan", "aggregation: {rule: bulyan, byzantine: {f}}"}};
  const std::vector<Rule> rules = smoke ? std::vector<Rule>{all_rules[0], all_rules[2]} : all_rules;
  const std::vector<std::string> attacks =
      smoke ? std::vector<std::string>{"scale"}
            : std::vector<std::string>{"signFlip", "gaussian", "scale", "aLittleIsEnough", "innerProduct"};
  const std::vector<std::pair<int, int>> settings = smoke ? std::vector<std::pair<int, int>>{{5, 1}}
                                                          : std::vector<std::pair<int, int>>{{5, 1}, {10, 2}};
  if (smoke) rounds = 2;

  try {
    const std::string root = make_temp_dir("attack-bench");
    std::printf("final server loss / honest-only FedAvg's (same run), %d rounds\n\n", rounds);
    std::string header = "| attack | Byzantine |";
    std::string rule_line = "|---|---|";
    for (const auto& r : rules) header += " " + r.label + " |", rule_line += "---:|";
    int worst_fedavg_ok = 0, robust_cells = 0, robust_within = 0;
    for (const auto& [n, f] : settings) {
      auto run = [&](const std::string& attack, const Rule& rule) {
        AttackedRun r;
        r.clients = n;
        r.byzantine = f;
        r.attack = attack;
        r.aggregation = with_counts(rule.aggregation, n, f);
        r.rounds = rounds;
        const std::string tag = std::to_string(f) + "of" + std::to_string(n) + "-" + (attack.empty() ? "honest" : attack) + "-" +
                                std::to_string(&rule - rules.data());
        return run_attacked_federation(r, root + "/" + tag).final_loss;
      };
      const double honest = run("", rules[0]);
      std::printf("%d of %d Byzantine: honest-only FedAvg (%d clients) final loss %.4f\n", f, n, n - f, honest);
      std::printf("%s\n%s\n", header.c_str(), rule_line.c_str());
      for (const auto& attack : attacks) {
        const Attack parsed = parse_attack(attack, n, f);
        char label[96];
        std::snprintf(label, sizeof label, "%s (%g)", attack.c_str(), parsed.strength);
        std::string row = "| " + std::string(label) + " | " + std::to_string(f) + "/" + std::to_string(n) + " |";
        for (const auto& rule : rules) {
          if (n < rule.min_clients_for(f)) {
            row += " n/a (n < 4f+3) |";
            continue;
          }
          const double ratio = run(attack, rule) / honest;
          char cell[32];
          std::snprintf(cell, sizeof cell, ratio < 100 ? " %.2f |" : " %.3g |", ratio);
          row += cell;
          if (rule.label == "FedAvg") worst_fedavg_ok += ratio <= 1.1;
          else ++robust_cells, robust_within += ratio <= 1.1;
        }
        std::printf("%s\n", row.c_str());
        std::fflush(stdout);
      }
      std::printf("\n");
    }
    std::printf("robust rules within 10%% of honest-only FedAvg: %d of %d cells; FedAvg within 10%%: %d of %zu attacks\n",
                robust_within, robust_cells, worst_fedavg_ok, attacks.size() * settings.size());
  } catch (const std::exception& e) {
    std::cerr << "zk0-attack-bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
