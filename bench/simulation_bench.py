#!/usr/bin/env python3
"""The simulation runtime at scale (worker/simulation.h), measured against baselines of the same run.

1. Flow-matching policy, clients split from the LeRobot fixture by episode, trained one at a time in
   one process: peak RSS of that process against one ordinary worker process (one client), the
   round's overhead (wall time minus the clients' training and the server's evaluation), and the
   per-client round time at 100 clients against 10 (1.0 = linear in the work).
2. SmolVLA (the tiny configuration of examples/smolvla-tiny.yaml): four virtual clients in one
   process, one at a time (simulated) and two at a time (simulated2), against four separate worker
   processes: peak memory and wall time per round.

  bench/simulation_bench.py [--bin build/bin] [--smoke]
--smoke: small sizes (CI runs it so that the benchmark keeps working; its figures are not judged).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "YifanTian07_G1-policy-train")


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_pids():
    out = subprocess.run(["pgrep", "-f", "bin/zk0-worker "], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def run(bin_dir, spec_path, flags):
    """Runs zk0 run; returns (seconds, {worker pid: peak RSS KiB})."""
    start = time.monotonic()
    proc = subprocess.Popen([os.path.join(bin_dir, "zk0"), "run", spec_path, "--fresh", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    peaks = {}
    while proc.poll() is None:
        for pid in worker_pids():
            peaks[pid] = max(peaks.get(pid, 0), peak_rss_kib(pid))
        time.sleep(0.1)
    output = proc.stdout.read()
    if proc.returncode != 0:
        sys.exit(f"zk0 run {spec_path} {' '.join(flags)} failed ({proc.returncode}):\n{output}")
    return time.monotonic() - start, peaks


def rounds(out_dir):
    with open(os.path.join(out_dir, "federated_metrics.json")) as f:
        return [r for r in json.load(f)["rounds"] if r["round"] > 0]


def run_header(name, out):
    """A two-round FederationRun's opening lines, up to its clients."""
    return f"""apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {{name: {name}}}
spec:
  rounds: 2
  outputDir: {out}
"""


def flow_spec(name, out, clients, steps, simulate):
    return run_header(name, out) + f"""  partition:
    clients: {clients}
    dataset: {{path: {FIXTURE}}}
{"  simulation: {concurrency: 1}" if simulate else ""}
  evaluation:
    dataset: {{path: {FIXTURE}, episodes: [0, 1]}}
    mode: quick
    batches: 2
    batchSize: 32
  training: {{localSteps: {steps}, batchSize: 32}}
  strategy: {{minFitClients: {clients}, minAvailableClients: {clients}, startTimeoutSeconds: 300, roundTimeoutSeconds: 3600}}
  policy: {{type: flow-matching-mlp, config: {{chunkSize: 10, hiddenDim: 256, layers: 3, stateDim: 26, actionDim: 26}}}}
"""


def smolvla_spec(name, out, datasets, steps):
    clients = "\n".join(f"    - name: owner-{i}\n      dataset: {{path: {datasets}/owner-{i}}}" for i in range(4))
    return run_header(name, out) + f"""  clients:
{clients}
  evaluation:
    dataset: {{path: {datasets}/eval}}
    mode: quick
    batches: 1
    batchSize: 8
  training: {{localSteps: {steps}, batchSize: 8}}
  strategy: {{minFitClients: 4, minAvailableClients: 4, startTimeoutSeconds: 300, roundTimeoutSeconds: 3600}}
  policy:
    type: smolvla
    config:
      vlm_model_name: examples/smolvla-tiny/backbone
      num_vlm_layers: 4
      chunk_size: 10
      n_action_steps: 10
      resize_imgs_with_padding: [64, 64]
      tokenizer_max_length: 16
      input_features:
        observation.state: {{type: STATE, shape: [6]}}
        observation.images.front: {{type: VISUAL, shape: [3, 96, 128]}}
      output_features:
        action: {{type: ACTION, shape: [6]}}
      prefix_cache: {{memory_mb: 256}}
"""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def mib(kib):
    return kib / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    bin_dir = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="zk0-simulation-bench-")
    small, large, steps = (4, 8, 2) if args.smoke else (10, 100, 10)

    print("== flow-matching policy, clients split from the LeRobot fixture (100 episodes), one at a time ==")
    _, single_peaks = run(bin_dir, write(f"{work}/one.yaml", flow_spec("one", f"{work}/one", 1, steps, False)), [])
    single_rss = max(single_peaks.values())
    per_client = {}
    for n in (small, large):
        out = f"{work}/sim{n}"
        _, peaks = run(bin_dir, write(f"{work}/sim{n}.yaml", flow_spec(f"sim{n}", out, n, steps, True)), [])
        rs = rounds(out)
        wall = sum(r["duration_seconds"] for r in rs)
        train = sum(c["train_seconds"] for r in rs for c in r["clients"])
        evaluation = sum(r["eval_seconds"] for r in rs)
        overhead = (wall - train - evaluation) / wall
        per_client[n] = wall / len(rs) / n
        rss = max(peaks.values())
        print(f"{n:4d} clients: peak RSS {mib(rss):7.1f} MiB ({rss / single_rss:.2f}x one worker process of one client: "
              f"{mib(single_rss):.1f} MiB), round {wall / len(rs):6.2f} s, overhead {100 * overhead:4.1f}% of the round "
              f"(training {train / len(rs):.2f} s, evaluation {evaluation / len(rs):.2f} s per round)")
    print(f"round time per client at {large} clients / at {small}: {per_client[large] / per_client[small]:.2f} (1.00 = linear)")

    print("== SmolVLA (tiny configuration), four clients: one simulating process against four worker processes ==")
    datasets = f"{work}/datasets"
    for i, name in enumerate(["owner-0", "owner-1", "owner-2", "owner-3", "eval"]):
        subprocess.run([os.path.join(bin_dir, "zk0"), "dataset", "synth", f"{datasets}/{name}", "--version", "v3.0", "--seed",
                        str(i + 1), "--task", f"task {i}", "--episodes", "4" if args.smoke else "8", "--episode-length", "40",
                        "--cameras", "1", "--height", "96", "--width", "128"], check=True, capture_output=True)
    figures = {}
    for mode, flags in (("separate", []), ("simulated", ["--simulate"]), ("simulated2", ["--simulate", "--concurrency", "2"])):
        out = f"{work}/smolvla-{mode}"  # a DNS label: no underscore
        _, peaks = run(bin_dir, write(f"{work}/smolvla-{mode}.yaml", smolvla_spec(f"smolvla-{mode}", out, datasets, steps)), flags)
        rs = rounds(out)
        figures[mode] = (sum(peaks.values()), sum(r["duration_seconds"] for r in rs) / len(rs))
        print(f"{mode:>9}: peak memory {mib(figures[mode][0]):7.1f} MiB (sum over worker processes), round {figures[mode][1]:6.2f} s")
    for mode in ("simulated", "simulated2"):
        print(f"{mode} / separate: memory {figures[mode][0] / figures['separate'][0]:.2f}x, "
              f"round time {figures[mode][1] / figures['separate'][1]:.2f}x")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
