#!/usr/bin/env python3
"""What differential privacy costs in utility and speed, measured.

Client-level (spec.strategy.privacy, the default mode):
A federation large enough for client-level DP to make sense: 100 simulated clients (spec.partition
of a synthetic LeRobot dataset, one process, `zk0 run --simulate`) of the flow-matching policy,
each round Poisson-sampling 10% of them, 30 rounds. First without privacy (FedAvg over the same
expected 10 clients a round, fractionFit 0.1); its median update norm becomes the clip norm C of
the private runs (as the DP-FedAvg papers tune C on non-private runs; tuning it on the real
federation's data would itself spend privacy). Then one run per target epsilon at delta 1e-5,
each with the noise multiplier the accountant finds for 30 rounds. Prints the server's final
held-out loss of each, against the non-private run's.

Sample-level (spec.training.privacy, DP-SGD in every worker; --sample-level): the quickstart
(examples/quickstart.yaml: four owners' AV1 LeRobot datasets, 10 rounds of 60 steps of 64) without
privacy and at each client's epsilon 10, 3 and 1 (delta 1e-5, per-sample clip norm 1), the
server's final loss against the non-private run's, and the workers' training speed (samples per
second of train time, summed over clients) against non-private training in the same run.

  bench/privacy_utility.py [--bin build/bin] [--clients N] [--sampling-rate Q]
                           [--sample-level [--example quickstart|smolvla-tiny] [--rounds R]] [--smoke]
--smoke: small sizes, one epsilon (CI keeps the script working; its figures are not judged).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

from example_runs import ROOT, accepted_updates, prepare_datasets, run_example

SPEC = """apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {{name: privacy-utility}}
spec:
  rounds: {rounds}
  outputDir: {out}
  partition:
    clients: {clients}
    dataset: {{synthetic: {{task: "stack the cubes", episodes: 4, episodeLength: 40, seed: 1}}}}
  evaluation:
    dataset: {{synthetic: {{task: "stack the cubes", episodes: 8, episodeLength: 40, seed: 100000}}}}
    batches: 4
    batchSize: 64
    seed: 3
  training:
    localSteps: 20
    batchSize: 32
    optimizer: {{lr: 1.0e-3}}
    seed: 11
  strategy:
    type: fedavg
    minAvailableClients: {clients}
{strategy}
  policy:
    type: flow-matching-mlp
    config: {{chunkSize: 5, hiddenDim: 64, layers: 2}}
  simulation: {{concurrency: 2}}
"""


def run(bin_dir, work, tag, clients, rounds, strategy):
    out = os.path.join(work, tag)
    spec = os.path.join(work, tag + ".yaml")
    with open(spec, "w") as f:
        f.write(SPEC.format(rounds=rounds, out=out, clients=clients, strategy=strategy))
    proc = subprocess.run([os.path.join(bin_dir, "zk0"), "run", spec, "--fresh"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"zk0 run {tag} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "federated_metrics.json")) as f:
        return json.load(f)["rounds"]


def example_run(bin_dir, work, example, tag, privacy, rounds, smoke):
    """examples/EXAMPLE.yaml with `privacy` as spec.training.privacy (None: as it is)."""
    edit = (lambda spec: re.sub(r"    gradClipNorm: [0-9.]+\n", f"    privacy: {privacy}\n", spec, count=1)) if privacy else None
    history = run_example(bin_dir, work, example, tag, rounds, smoke, edit)
    clients = accepted_updates(history)
    speed = sum(c["samples"] for c in clients) / sum(c["train_seconds"] for c in clients)
    epsilon = max((c.get("privacy_epsilon", 0) for c in clients), default=0)
    return history[-1]["server_eval_loss"], speed, epsilon


def sample_level(args):
    prepare_datasets(args.bin)
    rounds = 2 if args.smoke else args.rounds or (10 if args.example == "quickstart" else 5)
    epsilons = [10.0] if args.smoke else [float(e) for e in args.epsilons.split(",")]
    with tempfile.TemporaryDirectory(prefix="zk0-privacy-utility-") as work:
        base_loss, base_speed, _ = example_run(args.bin, work, args.example, "none", None, rounds, args.smoke)
        print(f"privacy_utility --sample-level: examples/{args.example}.yaml, {rounds} rounds, delta 1e-5, per-sample clip norm 1")
        print("| client epsilon | final server loss | vs no privacy | samples/s | vs no privacy |")
        print("|---:|---:|---:|---:|---:|")
        print(f"| none | {base_loss:.4f} | 1.00 | {base_speed:.0f} | 1.00 |")
        for eps in epsilons:
            loss, speed, spent = example_run(args.bin, work, args.example, f"eps{eps:g}", f"{{clipNorm: 1.0, targetEpsilon: {eps}, delta: 1.0e-5}}", rounds,
                                         args.smoke)
            print(f"| {spent:.3g} | {loss:.4f} | {loss / base_loss:.2f} | {speed:.0f} | {speed / base_speed:.2f} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--sampling-rate", type=float, default=0.1)
    parser.add_argument("--sample-level", action="store_true")
    parser.add_argument("--example", default="quickstart", help="with --sample-level: quickstart or smolvla-tiny")
    parser.add_argument("--rounds", type=int, default=0, help="with --sample-level: rounds (default: the example's)")
    parser.add_argument("--epsilons", default="10,3,1", help="with --sample-level: each client's target epsilons")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.sample_level:
        return sample_level(args)
    clients, rounds, q = (20, 3, 0.25) if args.smoke else (args.clients, 30, args.sampling_rate)
    epsilons = [10.0] if args.smoke else [10.0, 3.0, 1.0]
    with tempfile.TemporaryDirectory(prefix="zk0-privacy-utility-") as work:
        baseline = run(args.bin, work, "none", clients, rounds, f"    fractionFit: {q}\n    minFitClients: 1")
        norms = [c["distance_from_global"] for r in baseline[1:] for c in r["clients"] if c["status"] == "accepted"]
        clip = statistics.median(norms)
        base_loss = baseline[-1]["server_eval_loss"]
        print(f"privacy_utility: {clients} clients, q={q}, {rounds} rounds, delta 1e-5, clip norm {clip:.4g} "
              f"(the median update norm without privacy)")
        print("| epsilon | noise multiplier | final server loss | vs no privacy |")
        print("|---:|---:|---:|---:|")
        print(f"| none | - | {base_loss:.4f} | 1.00 |")
        for eps in epsilons:
            strategy = (f"    privacy: {{clipNorm: {clip:.6g}, samplingRate: {q}, targetEpsilon: {eps}, delta: 1.0e-5}}")
            history = run(args.bin, work, f"eps{eps:g}", clients, rounds, strategy)
            p = history[-1]["privacy"]
            loss = history[-1]["server_eval_loss"]
            print(f"| {p['epsilon']:.3g} | {p['noise_multiplier']:.3g} | {loss:.4f} | {loss / base_loss:.2f} |")
            if len(history) != rounds + 1:
                sys.exit(f"epsilon {eps}: the run ended after {len(history) - 1} of {rounds} rounds")


if __name__ == "__main__":
    main()
