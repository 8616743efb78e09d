#include "aggregator/run_outputs.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "aggregator/charts.h"
#include "core/util/fs.h"

namespace zk0 {
namespace fs = std::filesystem;

namespace {

std::string round_file(int round) {
  char name[32];
  std::snprintf(name, sizeof name, "round_%04d.json", round);
  return name;
}

std::string csv_number(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  std::ostringstream s;
  s.precision(9);
  if (j[key].is_number_integer()) s << j[key].get<int64_t>();
  else s << j[key].get<double>();
  return s.str();
}

const char* kClientColumns[] = {"loss",        "policy_loss",      "proximal_loss", "grad_norm",      "samples",
                                "steps",       "update_norm",      "learning_rate", "bytes_downloaded", "bytes_uploaded",
                                "train_seconds", "download_seconds", "upload_seconds", "score_first_order", "score_leave_one_out"};

}  // namespace

RunOutputs::RunOutputs(const FederationSpec& spec, std::string dir)
    : dir_(std::move(dir)), run_name_(spec.name), scored_(spec.evaluation.contribution_scores.any()) {
  for (const auto& set : spec.evaluation.sets) evaluation_sets_.push_back(set.name);
  fs::create_directories(fs::path(dir_) / "rounds");
  write_file_atomic((fs::path(dir_) / "spec.yaml").string(), to_yaml(spec));
}

void RunOutputs::restore(const nlohmann::json& history) {
  history_ = history;
  // Round files of rounds the restored history no longer has (completed after the checkpoint and
  // about to be redone) would contradict it.
  for (const auto& entry : fs::directory_iterator(fs::path(dir_) / "rounds")) {
    int round = -1;
    if (std::sscanf(entry.path().filename().c_str(), "round_%d.json", &round) == 1) {
      bool kept = false;
      for (const auto& r : history_) kept |= r.at("round").get<int>() == round;
      if (!kept) fs::remove(entry.path());
    }
  }
  write_all();
}

void RunOutputs::append_round(const nlohmann::json& record) {
  history_.push_back(record);
  write_file_atomic((fs::path(dir_) / "rounds" / round_file(record.at("round").get<int>())).string(),
                    record.dump(2) + "\n");
  write_all();
}

void RunOutputs::write_all() {
  const nlohmann::json doc = {{"run", run_name_}, {"rounds", history_}};
  write_file_atomic((fs::path(dir_) / "federated_metrics.json").string(), doc.dump(2) + "\n");
  write_csv();
  write_charts();
}

void RunOutputs::write_csv() {
  std::ostringstream out;
  // Then each evaluation set's loss (server rows) and, under contribution scores, each client's
  // scores on each set.
  const std::vector<const char*> estimates = scored_ ? std::vector<const char*>{"first_order", "leave_one_out"} : std::vector<const char*>{};
  out << "round,participant,status,server_eval_loss";
  for (const char* c : kClientColumns) out << ',' << c;
  for (const auto& set : evaluation_sets_) out << ",eval_loss:" << set;
  for (const auto& set : evaluation_sets_)
    for (const char* e : estimates) out << ",score_" << e << ':' << set;
  out << '\n';
  const size_t per_set_scores = evaluation_sets_.size() * estimates.size();
  for (const auto& r : history_) {
    const int round = r.at("round").get<int>();
    out << round << ",server,," << csv_number(r, "server_eval_loss");
    for (size_t i = 0; i < std::size(kClientColumns); ++i) out << ',';
    const nlohmann::json sets = r.value("eval_sets", nlohmann::json::object());
    for (const auto& set : evaluation_sets_) out << ',' << csv_number(sets.value(set, nlohmann::json::object()), "loss");
    out << std::string(per_set_scores, ',') << '\n';
    for (const auto& c : r.value("clients", nlohmann::json::array())) {
      out << round << ',' << c.at("client").get<std::string>() << ',' << c.at("status").get<std::string>() << ',';
      for (const char* col : kClientColumns) out << ',' << csv_number(c, col);
      out << std::string(evaluation_sets_.size(), ',');
      const nlohmann::json scores = c.value("set_scores", nlohmann::json::object());
      for (const auto& set : evaluation_sets_)
        for (const char* e : estimates) out << ',' << csv_number(scores.value(set, nlohmann::json::object()), e);
      out << '\n';
    }
  }
  write_file_atomic((fs::path(dir_) / "federated_metrics.csv").string(), out.str());
}

Chart server_loss_chart(const nlohmann::json& history, const std::string& run_name, const std::string& server_set) {
  Chart chart;
  chart.title = "Server eval loss (" + run_name + ")";
  chart.x_label = "round";
  chart.y_label = "flow-matching loss";
  chart.series = {{"server (held-out)", {}, {}}, {"clients' mean (training)", {}, {}, true}};
  chart.integer_x = true;
  chart.markers_legend = "a client left out";
  for (const auto& r : history) {
    const double round = r.at("round").get<double>();
    if (r.contains("server_eval_loss") && !r["server_eval_loss"].is_null()) {
      chart.series[0].x.push_back(round);
      chart.series[0].y.push_back(r["server_eval_loss"].get<double>());
    }
    const nlohmann::json sets = r.value("eval_sets", nlohmann::json::object());
    for (const auto& [set, result] : sets.items()) {
      if (set == server_set) continue;
      const std::string label = set + " (evaluation set)";
      auto it = std::find_if(chart.series.begin(), chart.series.end(), [&](const Series& s) { return s.label == label; });
      if (it == chart.series.end()) it = chart.series.insert(chart.series.end(), Series{label, {}, {}});
      it->x.push_back(round);
      it->y.push_back(result.at("loss").get<double>());
    }
    double sum = 0;
    int accepted = 0;
    std::map<std::string, int> left_out;  // by status: rejected, dropped, failed, timed_out
    for (const auto& c : r.value("clients", nlohmann::json::array())) {
      const std::string status = c.at("status").get<std::string>();
      if (status == "accepted") {
        sum += c.at("loss").get<double>();
        ++accepted;
      } else if (status != "aggregating") {
        ++left_out[status];
      }
    }
    if (accepted > 0) {
      chart.series[1].x.push_back(round);
      chart.series[1].y.push_back(sum / accepted);
    }
    if (!left_out.empty()) {
      std::string label;
      for (const auto& [status, count] : left_out)
        label += (label.empty() ? "" : ", ") + std::to_string(count) + " " + status;
      chart.markers.push_back({round, label});
    }
  }
  return chart;
}

Chart client_loss_chart(const nlohmann::json& history, const std::string& run_name) {
  Chart chart;
  chart.title = "Client training loss (" + run_name + ")";
  chart.x_label = "round";
  chart.y_label = "loss";
  chart.integer_x = true;
  std::map<std::string, size_t> index;
  for (const auto& r : history) {
    const double round = r.at("round").get<double>();
    for (const auto& c : r.value("clients", nlohmann::json::array())) {
      if (c.at("status") != "accepted") continue;
      const std::string name = c.at("client").get<std::string>();
      if (!index.count(name)) {
        index[name] = chart.series.size();
        chart.series.push_back({name, {}, {}});
      }
      chart.series[index[name]].x.push_back(round);
      chart.series[index[name]].y.push_back(c.at("loss").get<double>());
    }
  }
  return chart;
}

void RunOutputs::write_charts() {
  write_chart(server_loss_chart(history_, run_name_, evaluation_sets_.at(0)), (fs::path(dir_) / "server_eval_loss").string());
  write_chart(client_loss_chart(history_, run_name_), (fs::path(dir_) / "client_losses").string());
}

void RunOutputs::write_status(const std::string& status_json) {
  write_file_atomic((fs::path(dir_) / "status.json").string(), status_json + "\n");
}

}  // namespace zk0
