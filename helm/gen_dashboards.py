#!/usr/bin/env python3
"""Writes the zk0 Grafana dashboards into helm/zk0/dashboards/*.json.

The JSON files are generated, not hand-edited: change this file and run
`python3 helm/gen_dashboards.py`. Grafana schemaVersion 39; every panel and query uses the
`${datasource}` variable (type prometheus) and filters runs with `run=~"$run"`. PromQL uses only
the Grafana variables $run, $__rate_interval and $__range.

Events that happen once per round (rounds, transfers, aggregations) are too rare for
$__rate_interval windows in quantiles and ratios; those panels use a fixed 1h window, said in
their titles, or $__range in stat panels.
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
RUN = 'run=~"$run"'
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zk0", "dashboards")


class Board:
    def __init__(self, uid, title, description):
        self.uid, self.title, self.description = uid, title, description
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def _place(self, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({"type": "row", "title": title, "collapsed": False, "datasource": DS,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "id": self._id(),
                            "panels": []})
        self.y += 1

    def add(self, panel, w, h):
        panel["id"] = self._id()
        panel["gridPos"] = self._place(w, h)
        panel["datasource"] = DS
        for i, t in enumerate(panel.get("targets", [])):
            t.setdefault("refId", chr(ord("A") + i))
        self.panels.append(panel)

    def json(self):
        return {
            "annotations": {"list": []},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [{"asDropdown": True, "icon": "external link", "includeVars": True,
                       "keepTime": True, "tags": ["zk0"], "targetBlank": False,
                       "title": "zk0 dashboards", "type": "dashboards"}],
            "panels": self.panels,
            "refresh": "30s",
            "schemaVersion": 39,
            "tags": ["zk0"],
            "templating": {"list": [
                {"name": "datasource", "label": "Data source", "type": "datasource",
                 "query": "prometheus", "current": {}, "hide": 0, "includeAll": False,
                 "multi": False, "options": [], "refresh": 1, "regex": "", "skipUrlSync": False},
                {"name": "run", "label": "Run", "type": "query", "datasource": DS,
                 "definition": "label_values(zk0_aggregator_round, run)",
                 "query": "label_values(zk0_aggregator_round, run)",
                 "current": {}, "hide": 0, "includeAll": True, "allValue": ".*", "multi": True,
                 "options": [], "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1},
            ]},
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


def t(expr, legend="", instant=False, fmt=None):
    target = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto",
              "range": not instant, "instant": instant, "editorMode": "code"}
    if fmt:
        target["format"] = fmt
    return target


def timeseries(title, description, targets, unit="short", bars=False, stack=False, min_=None,
               max_=None, legend_calcs=("lastNotNull",)):
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1,
              "fillOpacity": 60 if bars else 10, "showPoints": "never", "spanNulls": True,
              "pointSize": 4, "stacking": {"mode": "normal" if stack else "none", "group": "A"},
              "axisPlacement": "auto", "gradientMode": "none"}
    defaults = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    return {"type": "timeseries", "title": title, "description": description, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                   "showLegend": True, "calcs": list(legend_calcs)},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def thresholds(steps):
    return {"mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in steps]}


def stat(title, description, targets, unit="short", steps=((None, "blue"),), decimals=None,
         graph=True):
    defaults = {"unit": unit, "thresholds": thresholds(steps), "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": description, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area" if graph else "none",
                        "justifyMode": "auto", "textMode": "auto", "orientation": "auto"}}


def gauge(title, description, targets, unit="percentunit", min_=0, max_=1):
    return {"type": "gauge", "title": title, "description": description, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, "min": min_, "max": max_,
                                         "thresholds": thresholds(((None, "blue"),)),
                                         "color": {"mode": "thresholds"}}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "showThresholdLabels": False, "showThresholdMarkers": False}}


def bargauge(title, description, targets, unit="short"):
    return {"type": "bargauge", "title": title, "description": description, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, "min": 0,
                                         "thresholds": thresholds(((None, "blue"),)),
                                         "color": {"mode": "thresholds"}}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "displayMode": "basic", "orientation": "horizontal",
                        "showUnfilled": True}}


def table(title, description, targets):
    return {"type": "table", "title": title, "description": description, "targets": targets,
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"showHeader": True, "cellHeight": "sm"},
            "transformations": [{"id": "organize", "options": {
                "excludeByName": {"Time": True, "Value": True}, "renameByName": {}}}]}


def quantiles(metric, by, window, qs=(0.5, 0.95), extra=""):
    """histogram_quantile targets for a histogram, one per quantile."""
    sel = "{" + RUN + extra + "}" if RUN else ""
    by_le = ", ".join(list(by) + ["le"])
    legend_by = " ".join("{{%s}}" % b for b in by)
    return [t(f"histogram_quantile({q}, sum by ({by_le}) (rate({metric}_bucket{sel}[{window}])))",
              f"{legend_by} p{int(q * 100)}".strip()) for q in qs]


def run_overview():
    b = Board("zk0-run-overview", "zk0 / Run overview",
              "Progress, losses and health of FederationRuns (one aggregator per run).")
    b.row("Progress")
    b.add(stat("Round", "Round in progress (0 before the first), per run.",
               [t(f"max by (run) (zk0_aggregator_round{{{RUN}}})", "{{run}}")], decimals=0), 4, 4)
    b.add(gauge("Round progress", "Round in progress divided by the rounds the run is to complete.",
                [t(f"max by (run) (zk0_aggregator_round{{{RUN}}}) / max by (run) "
                   f"(zk0_aggregator_rounds{{{RUN}}} > 0)", "{{run}}")]), 4, 4)
    b.add(stat("Server eval loss", "Latest loss of the global policy on the held-out dataset.",
               [t(f"max by (run) (zk0_aggregator_server_eval_loss{{{RUN}}})", "{{run}}")],
               decimals=3), 4, 4)
    b.add(stat("Clients connected", "Clients registered with the aggregator and heartbeating.",
               [t(f"max by (run) (zk0_aggregator_clients_connected{{{RUN}}})", "{{run}}")],
               decimals=0), 4, 4)
    b.add(stat("Rounds completed", "Rounds aggregated within the dashboard's time range.",
               [t(f"sum by (run) (increase(zk0_aggregator_rounds_completed_total{{{RUN}}}[$__range]))",
                  "{{run}}")], decimals=0, graph=False), 4, 4)
    b.add(stat("Checkpoint age", "Time since the run's latest checkpoint.",
               [t(f"time() - max by (run) (zk0_aggregator_checkpoint_timestamp_seconds{{{RUN}}} > 0)",
                  "{{run}}")], unit="s",
               steps=((None, "green"), (3600, "orange"), (7200, "red")), graph=False), 4, 4)

    b.row("Loss")
    b.add(timeseries(
        "Server eval loss",
        "Loss of the global policy on the held-out dataset after each evaluation, against time. "
        "Prometheus keeps values against time, not against the round; the Round panel beside it "
        "gives the round, and outputDir/federated_metrics.json (or server_eval_loss.svg) has the "
        "loss per round.",
        [t(f"max by (run) (zk0_aggregator_server_eval_loss{{{RUN}}})", "{{run}}")]), 8, 9)
    b.add(timeseries(
        "Loss by evaluation set",
        "Loss of the global policy on each of spec.evaluation.sets after each evaluation: the "
        "run's own held-out set and those sponsors published. The first set's is the server eval "
        "loss; each set's per round is in federated_metrics.json (eval_sets) and the ledger.",
        [t(f"max by (run, set) (zk0_aggregator_evaluation_set_loss{{{RUN}}})", "{{run}} / {{set}}")]), 8, 9)
    b.add(timeseries("Client train loss", "Mean local training loss (policy + proximal) of each "
                     "client's latest round.",
                     [t(f"max by (run, client) (zk0_worker_train_loss{{{RUN}}})",
                        "{{run}} / {{client}}")]), 8, 9)

    b.row("Rounds and clients")
    b.add(timeseries("Round progress", "Round in progress and the rounds planned.",
                     [t(f"max by (run) (zk0_aggregator_round{{{RUN}}})", "{{run}} round"),
                      t(f"max by (run) (zk0_aggregator_rounds{{{RUN}}})", "{{run}} rounds planned")],
                     min_=0), 8, 8)
    b.add(timeseries("Connected and selected clients",
                     "Clients registered and heartbeating, and clients selected for the round in "
                     "progress.",
                     [t(f"max by (run) (zk0_aggregator_clients_connected{{{RUN}}})",
                        "{{run}} connected"),
                      t(f"max by (run) (zk0_aggregator_clients_selected{{{RUN}}})",
                        "{{run}} selected")], min_=0), 8, 8)
    b.add(timeseries("Rounds completed per hour", "Rounds aggregated in the preceding hour.",
                     [t(f"sum by (run) (increase(zk0_aggregator_rounds_completed_total{{{RUN}}}[1h]))",
                        "{{run}}")], min_=0), 8, 8)

    b.row("Contributions")
    b.add(timeseries("Contribution score by client",
                     "Under evaluation.contributionScores: how much each client's updates lowered the "
                     "server's loss on each evaluation set, summed over the rounds scored. first_order: "
                     "the loss's first-order change along the client's share of the average; "
                     "leave_one_out: the loss of the round's aggregate without the client's update "
                     "minus with it. Higher helped more, below zero hurt. Per round: "
                     "federated_metrics.json and the ledger.",
                     [t(f"max by (run, client, estimate, set) (zk0_aggregator_client_contribution_score{{{RUN}}})",
                        "{{run}} / {{client}} {{estimate}} on {{set}}")]), 24, 8)

    b.row("Round health")
    b.add(timeseries(
        "Stragglers, dropouts and client failures",
        "Selected clients without an update at the round deadline (stragglers), selected clients "
        "that stopped heartbeating mid-round (dropouts) and failures reported by workers.",
        [t(f"sum by (run) (increase(zk0_aggregator_stragglers_total{{{RUN}}}[$__rate_interval]))",
           "{{run}} stragglers"),
         t(f"sum by (run) (increase(zk0_aggregator_dropouts_total{{{RUN}}}[$__rate_interval]))",
           "{{run}} dropouts"),
         t(f"sum by (run) (increase(zk0_aggregator_client_failures_total{{{RUN}}}[$__rate_interval]))",
           "{{run}} client failures")], bars=True, min_=0, legend_calcs=("sum",)), 6, 8)
    b.add(timeseries("Round duration p50 / p95 (1h window)",
                     "Wall time of a round, all attempts included, over rounds that ended in the "
                     "preceding hour.",
                     quantiles("zk0_aggregator_round_duration_seconds", ["run"], "1h"),
                     unit="s", min_=0), 6, 8)
    b.add(timeseries("Aggregation duration p50 / p95 (1h window)",
                     "Time to aggregate the accepted updates of a round.",
                     quantiles("zk0_aggregator_aggregation_duration_seconds", ["run"], "1h"),
                     unit="s", min_=0), 6, 8)
    b.add(timeseries("Checkpoint size", "Size of the latest checkpoint's weights.",
                     [t(f"max by (run) (zk0_aggregator_checkpoint_bytes{{{RUN}}})", "{{run}}")],
                     unit="bytes", min_=0), 6, 8)
    return b


def transport():
    b = Board("zk0-transport", "zk0 / Transport",
              "Parameter transfers between the aggregator and workers, update verification and "
              "the aggregator's gRPC server.")
    b.row("Bytes")
    b.add(timeseries("Aggregator bytes per second by direction",
                     "Parameter bytes moved by the aggregator (download: to workers, upload: from "
                     "workers).",
                     [t(f"sum by (run, direction) (rate(zk0_aggregator_transfer_bytes_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} {{direction}}")], unit="Bps", min_=0), 12, 8)
    b.add(timeseries("Transfer throughput (1h window)",
                     "Bytes per second while a transfer is under way: bytes moved divided by the "
                     "time spent in transfers.",
                     [t(f"sum by (run, direction) (rate(zk0_aggregator_transfer_bytes_total{{{RUN}}}[1h]))"
                        f" / sum by (run, direction) (rate(zk0_aggregator_transfer_duration_seconds_sum"
                        f"{{{RUN}}}[1h]))", "{{run}} {{direction}}")], unit="Bps", min_=0), 12, 8)
    b.add(timeseries("Worker bytes per second by client",
                     "Parameter bytes moved by each worker, by direction.",
                     [t(f"sum by (run, client, direction) (rate(zk0_worker_transfer_bytes_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} / {{client}} {{direction}}")],
                     unit="Bps", min_=0), 12, 8)
    b.add(bargauge("Bytes moved in range", "Parameter bytes the aggregator moved within the "
                   "dashboard's time range, by direction.",
                   [t(f"sum by (direction) (increase(zk0_aggregator_transfer_bytes_total{{{RUN}}}"
                      "[$__range]))", "{{direction}}", instant=True)], unit="bytes"), 6, 8)
    b.add(stat("Hash failures in range", "Transfers that failed a CRC32C or SHA-256 check within "
               "the time range (they are retried up to transferAttempts).",
               [t(f"sum(increase(zk0_aggregator_hash_failures_total{{{RUN}}}[$__range]))",
                  "hash failures")], steps=((None, "green"), (1, "orange")), decimals=0,
               graph=False), 6, 8)
    b.add(timeseries("Transfers resumed",
                     "Transfers that continued from their last verified chunk after a dropped "
                     "link, by direction.",
                     [t(f"sum by (run, direction) (increase(zk0_aggregator_transfer_resumes_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} {{direction}}")],
                     bars=True, min_=0, legend_calcs=("sum",)), 12, 8)
    b.add(timeseries("Bytes sent twice by client",
                     "Parameter bytes that crossed a worker's link more than once (uploads: sent "
                     "but not kept by the aggregator; downloads: received, then thrown away).",
                     [t(f"sum by (run, client, direction) (increase(zk0_worker_transfer_resent_bytes_total"
                        f"{{{RUN}}}[$__rate_interval]))", "{{run}} / {{client}} {{direction}}")],
                     unit="bytes", bars=True, min_=0, legend_calcs=("sum",)), 12, 8)
    b.add(timeseries("Compression ratio by client",
                     "Under transport.compression: the float32 bytes a worker's transfers stood "
                     "for over the bytes that travelled, by direction, over the run so far "
                     "(downloads count the whole global a new worker receives first).",
                     [t(f"sum by (run, client, direction) (zk0_worker_payload_bytes_total{{{RUN},form=\"decoded\"}})"
                        f" / sum by (run, client, direction) (zk0_worker_payload_bytes_total{{{RUN},form=\"encoded\"}})",
                        "{{run}} / {{client}} {{direction}}")], unit="x", min_=0), 12, 8)
    b.add(timeseries("Update bytes before and after encoding",
                     "Under transport.compression: float32 bytes (decoded) and the bytes the codec "
                     "made of them (encoded) per second, by direction.",
                     [t(f"sum by (run, direction, form) (rate(zk0_worker_payload_bytes_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} {{direction}} {{form}}")], unit="Bps", min_=0), 12, 8)

    b.row("Transfers and updates")
    b.add(timeseries("Transfer duration p50 / p95 / p99 (1h window)",
                     "Duration of one parameter transfer, by direction.",
                     quantiles("zk0_aggregator_transfer_duration_seconds", ["run", "direction"],
                               "1h", qs=(0.5, 0.95, 0.99)), unit="s", min_=0), 8, 8)
    b.add(timeseries("Updates accepted, rejected, discarded and clipped",
                     "Updates verified and aggregated; updates refused by reason (damaged "
                     "chunks or tensors, NaN, stale parameters...); valid updates a robust rule "
                     "(Krum, Multi-Krum, Bulyan) left out; updates scaled to the clip norm.",
                     [t(f"sum by (run) (increase(zk0_aggregator_updates_accepted_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} accepted"),
                      t(f"sum by (run, reason) (increase(zk0_aggregator_updates_rejected_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} rejected: {{reason}}"),
                      t(f"sum by (run, rule) (increase(zk0_aggregator_updates_discarded_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} discarded by {{rule}}"),
                      t(f"sum by (run) (increase(zk0_aggregator_updates_clipped_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} clipped")],
                     bars=True, min_=0, legend_calcs=("sum",)), 8, 8)
    b.add(timeseries("Hash failures", "Transfers failing a CRC32C or SHA-256 check.",
                     [t(f"sum by (run) (increase(zk0_aggregator_hash_failures_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}}")], bars=True, min_=0,
                     legend_calcs=("sum",)), 8, 8)

    b.row("gRPC server (aggregator)")
    b.add(timeseries("Handled RPCs per second by method and code",
                     "RPCs the aggregator completed, by method and status code.",
                     [t(f"sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{grpc_method}} {{grpc_code}}")],
                     unit="reqps", min_=0), 12, 8)
    b.add(timeseries("Latency p95 by method",
                     "95th percentile of the time the aggregator took to handle an RPC.",
                     [t("histogram_quantile(0.95, sum by (grpc_method, le) "
                        f"(rate(grpc_server_handling_seconds_bucket{{{RUN}}}[$__rate_interval])))",
                        "{{grpc_method}}")], unit="s", min_=0), 12, 8)
    b.add(timeseries("Error ratio by method", "Share of handled RPCs with a code other than OK.",
                     # "or ... * 0": methods without errors show 0, not a gap.
                     [t(f'(sum by (grpc_method) (rate(grpc_server_handled_total{{{RUN},grpc_code!="OK"}}'
                        "[$__rate_interval])) or sum by (grpc_method) (rate(grpc_server_handled_total"
                        f"{{{RUN}}}[$__rate_interval])) * 0) / sum by (grpc_method) (rate("
                        f"grpc_server_handled_total{{{RUN}}}[$__rate_interval]))", "{{grpc_method}}")],
                     unit="percentunit", min_=0), 12, 8)
    b.add(timeseries("RPCs in flight by method", "RPCs started and not yet handled (open "
                     "streams included).",
                     [t(f"sum by (grpc_method) (grpc_server_started_total{{{RUN}}}) - "
                        f"sum by (grpc_method) (grpc_server_handled_total{{{RUN}}})",
                        "{{grpc_method}}")], min_=0), 12, 8)
    return b


def workers():
    b = Board("zk0-workers", "zk0 / Workers",
              "Local training on each client (worker pod): throughput, step time, data loading, "
              "losses, updates and GPUs.")
    b.row("Throughput")
    b.add(timeseries("Samples per second by client", "Training throughput of each client's "
                     "latest round.",
                     [t(f"max by (run, client) (zk0_worker_samples_per_second{{{RUN}}})",
                        "{{run}} / {{client}}")], min_=0), 12, 8)
    b.add(timeseries("Local step time p50 / p95 by client",
                     "Wall time of one optimizer step, data wait included.",
                     quantiles("zk0_worker_local_step_duration_seconds", ["run", "client"],
                               "$__rate_interval"), unit="s", min_=0), 12, 8)
    b.add(timeseries("Data wait, share of wall time",
                     "rate(zk0_worker_data_wait_seconds_total): seconds the trainer waited for "
                     "batches per second of wall time. Near 0 outside training; a high value while "
                     "training means the data loader (parquet, video decoding) is the bottleneck.",
                     [t(f"sum by (run, client) (rate(zk0_worker_data_wait_seconds_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} / {{client}}")],
                     unit="percentunit", min_=0), 12, 8)
    b.add(timeseries("Data wait, share of step time",
                     "Time waiting for batches divided by the time spent in optimizer steps.",
                     [t(f"sum by (run, client) (rate(zk0_worker_data_wait_seconds_total{{{RUN}}}"
                        "[$__rate_interval])) / sum by (run, client) "
                        f"(rate(zk0_worker_local_step_duration_seconds_sum{{{RUN}}}[$__rate_interval]))",
                        "{{run}} / {{client}}")], unit="percentunit", min_=0), 12, 8)

    b.row("Losses and updates")
    b.add(timeseries("Train loss by client", "Mean loss (policy + proximal) of each client's "
                     "latest round.",
                     [t(f"max by (run, client) (zk0_worker_train_loss{{{RUN}}})",
                        "{{run}} / {{client}}")]), 8, 8)
    b.add(timeseries("Policy and proximal loss by client",
                     "The flow-matching (policy) loss and the FedProx proximal term, means of the "
                     "latest round.",
                     [t(f"max by (run, client) (zk0_worker_policy_loss{{{RUN}}})",
                        "{{run}} / {{client}} policy"),
                      t(f"max by (run, client) (zk0_worker_proximal_loss{{{RUN}}})",
                        "{{run}} / {{client}} proximal")]), 8, 8)
    b.add(timeseries("Update norm by client",
                     "L2 distance of each client's latest update from the global parameters it "
                     "trained from.",
                     [t(f"max by (run, client) (zk0_worker_update_norm{{{RUN}}})",
                        "{{run}} / {{client}}")], min_=0), 8, 8)
    b.add(bargauge("Rounds trained in range by client",
                   "Rounds of local training each client finished within the time range.",
                   [t(f"sum by (run, client) (increase(zk0_worker_rounds_trained_total{{{RUN}}}"
                      "[$__range]))", "{{run}} / {{client}}", instant=True)]), 12, 8)
    b.add(timeseries("Worker bytes per second by direction",
                     "Parameter bytes each worker moved (download: global parameters, upload: "
                     "its update).",
                     [t(f"sum by (run, client, direction) (rate(zk0_worker_transfer_bytes_total{{{RUN}}}"
                        "[$__rate_interval]))", "{{run}} / {{client}} {{direction}}")],
                     unit="Bps", min_=0), 12, 8)

    b.row("GPU (DCGM exporter)")
    gpu_desc = ("Needs the DCGM exporter (NVIDIA dcgm-exporter with Kubernetes pod mapping) "
                "scraped by the same Prometheus, its series carrying the worker pod's namespace "
                "and pod labels; joined to zk0 workers on namespace and pod. ")
    join = (f" * on (namespace, pod) group_left (run, client) "
            f"group by (namespace, pod, run, client) (zk0_worker_rounds_trained_total{{{RUN}}})")
    b.add(timeseries("GPU utilisation", gpu_desc + "DCGM_FI_DEV_GPU_UTIL: percent of time a "
                     "kernel ran.",
                     [t(f"max by (namespace, pod, gpu) (DCGM_FI_DEV_GPU_UTIL){join}",
                        "{{run}} / {{client}} GPU {{gpu}}")], unit="percent", min_=0,
                     max_=100), 8, 8)
    b.add(timeseries("GPU memory used", gpu_desc + "DCGM_FI_DEV_FB_USED: framebuffer memory "
                     "used, MiB.",
                     [t(f"max by (namespace, pod, gpu) (DCGM_FI_DEV_FB_USED){join}",
                        "{{run}} / {{client}} GPU {{gpu}}")], unit="mbytes", min_=0), 8, 8)
    b.add(timeseries("GPU power", gpu_desc + "DCGM_FI_DEV_POWER_USAGE: board power draw, W.",
                     [t(f"max by (namespace, pod, gpu) (DCGM_FI_DEV_POWER_USAGE){join}",
                        "{{run}} / {{client}} GPU {{gpu}}")], unit="watt", min_=0), 8, 8)
    return b


def operator():
    b = Board("zk0-operator", "zk0 / Operator",
              "The zk0 operator: reconciles, runs by phase, leader election, watches and the "
              "versions running.")
    b.row("Reconciles")
    b.add(timeseries("Reconciles per second by result", "FederationRun reconciles, by result.",
                     [t("sum by (result) (rate(zk0_operator_reconcile_total[$__rate_interval]))",
                        "{{result}}")], unit="ops", min_=0), 8, 8)
    b.add(timeseries("Reconcile error ratio", "Share of reconciles that ended in an error.",
                     [t('sum(rate(zk0_operator_reconcile_total{result="error"}[$__rate_interval])) / '
                        "sum(rate(zk0_operator_reconcile_total[$__rate_interval]))", "errors")],
                     unit="percentunit", min_=0), 8, 8)
    b.add(timeseries("Reconcile duration p50 / p95 / p99", "Time one reconcile took.",
                     [t(f"histogram_quantile({q}, sum by (le) "
                        "(rate(zk0_operator_reconcile_duration_seconds_bucket[$__rate_interval])))",
                        f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], unit="s", min_=0), 8, 8)

    b.row("Runs and leadership")
    runs = "zk0_operator_runs and on (instance) (zk0_operator_leader == 1)"
    b.add(timeseries("Runs by phase", "FederationRuns by phase, as the leader counts them.",
                     [t(f"sum by (phase) ({runs})", "{{phase}}")], stack=True, min_=0), 12, 8)
    b.add(bargauge("Runs by phase now", "FederationRuns by phase, as the leader counts them.",
                   [t(f"sum by (phase) ({runs})", "{{phase}}", instant=True)]), 6, 8)
    b.add(stat("Leaders", "Replicas holding the Lease: should be exactly 1.",
               [t("sum(zk0_operator_leader)", "leaders")],
               steps=((None, "red"), (1, "green"), (2, "red")), decimals=0), 6, 8)
    b.add(timeseries("Leader by replica", "1 on the replica holding the Lease.",
                     [t("max by (pod, instance) (zk0_operator_leader)", "{{pod}} {{instance}}")],
                     min_=0, max_=1), 8, 8)
    b.add(stat("Leader changes in range", "Times a replica gained or lost the Lease within the "
               "time range.",
               [t("sum(changes(zk0_operator_leader[$__range]))", "changes")],
               steps=((None, "green"), (3, "orange")), decimals=0, graph=False), 4, 8)
    b.add(timeseries("Watch restarts by resource",
                     "Watches the operator had to restart (expired resourceVersion, closed "
                     "connection), by resource.",
                     [t("sum by (resource) (increase(zk0_operator_watch_restarts_total"
                        "[$__rate_interval]))", "{{resource}}")], bars=True, min_=0,
                     legend_calcs=("sum",)), 12, 8)

    b.row("Build")
    b.add(table("Versions running", "zk0_build_info of every zk0 component Prometheus scrapes.",
                [t("count by (component, version) (zk0_build_info)", instant=True,
                   fmt="table")]), 24, 6)
    return b


def main():
    check = "--check" in sys.argv
    stale = []
    for board in (run_overview(), transport(), workers(), operator()):
        path = os.path.join(OUT, board.uid + ".json")
        text = json.dumps(board.json(), indent=2, ensure_ascii=False) + "\n"
        if check:
            if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
                stale.append(path)
            continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    if stale:
        sys.exit("out of date (run python3 helm/gen_dashboards.py): " + " ".join(stale))


if __name__ == "__main__":
    main()
