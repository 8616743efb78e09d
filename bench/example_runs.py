"""Runs of examples/EXAMPLE.yaml with one section changed, for the utility benchmarks
(privacy_utility.py, compression_utility.py): the example's own datasets and policy, its
outputDir moved to a scratch folder, its rounds (and under --smoke its local steps) set."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prepare_datasets(bin_dir):
    subprocess.run(["bash", os.path.join(ROOT, "examples", "quickstart-datasets.sh"), os.path.join(bin_dir, "zk0")], check=True,
                   cwd=ROOT, capture_output=True)


def run_example(bin_dir, work, example, tag, rounds, smoke, edit=None):
    """Returns federated_metrics.json's rounds. `edit`: a function of the spec's text."""
    with open(os.path.join(ROOT, "examples", example + ".yaml")) as f:
        spec = f.read()
    spec = spec.replace(f"outputDir: outputs/{example}", f"outputDir: {os.path.join(work, tag)}")
    spec = re.sub(r"\n  rounds: \d+\n", f"\n  rounds: {rounds}\n", spec, count=1)
    if smoke:
        spec = re.sub(r"localSteps: \d+", "localSteps: 5", spec, count=1)
    if edit:
        spec = edit(spec)
    path = os.path.join(work, tag + ".yaml")
    with open(path, "w") as f:
        f.write(spec)
    proc = subprocess.run([os.path.join(bin_dir, "zk0"), "run", path, "--fresh"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"zk0 run {tag} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with open(os.path.join(work, tag, "federated_metrics.json")) as f:
        return json.load(f)["rounds"]


def accepted_updates(history):
    return [c for r in history[1:] for c in r["clients"] if c["status"] == "accepted"]
