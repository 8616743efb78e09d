"""zk0's privacy accountant against two independent ones: Opacus's RDP accountant and Google's
dp_accounting (test-only, pinned in tests/parity/requirements.txt). On a grid of sampling rates,
noise multipliers, round counts and deltas, `zk0 privacy epsilon` must equal both to 1e-6
relative at the same RDP orders, and `zk0 privacy noise` must find the noise multiplier both
calibrations find. dp_accounting is compared at integer orders: for fractional ones it sums the
binomial series' terms without their signs (a looser bound than the signed series of Mironov et
al. 2019, Sec. 3.3, which Opacus and zk0 evaluate), so there the two are different quantities.

usage: accountant_reference.py PATH/TO/zk0
"""
import itertools
import json
import subprocess
import sys
import warnings

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant
from opacus.accountants.analysis import rdp as opacus_rdp
from opacus.accountants.utils import get_noise_multiplier

warnings.filterwarnings("ignore")  # Opacus warns when the best order is the largest one
ZK0 = sys.argv[1]
ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))  # Opacus's defaults, zk0's
INTEGER_ORDERS = list(range(2, 64)) + [128, 256]


def zk0(queries):
    """Answers from one `zk0 privacy batch` process, in the queries' order."""
    out = subprocess.run([ZK0, "privacy", "batch"], input="".join(json.dumps(q) + "\n" for q in queries), check=True,
                         capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def opacus_epsilon(q, z, steps, delta):
    rdp = opacus_rdp.compute_rdp(q=q, noise_multiplier=z, steps=steps, orders=ORDERS)
    return float(opacus_rdp.get_privacy_spent(orders=ORDERS, rdp=rdp, delta=delta)[0])


def google_accountant():
    return rdp_privacy_accountant.RdpAccountant(INTEGER_ORDERS, dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)


def google_event(q, z, steps):
    return dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)


def google_epsilon(q, z, steps, delta):
    return float(google_accountant().compose(google_event(q, z, steps)).get_epsilon(delta))


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


failures = []
checked = 0
grid = list(itertools.product([0.001, 0.01, 0.1, 0.5, 1.0], [0.5, 1.1, 2.0, 5.0], [1, 30, 1000], [1e-5, 1e-8]))
queries = []
for q, z, steps, delta in grid:
    common = {"query": "epsilon", "sampling_rate": q, "noise_multiplier": z, "rounds": steps, "delta": delta}
    queries += [common, dict(common, orders=INTEGER_ORDERS)]
targets = ((0.01, 1.0, 300, 1e-5), (0.1, 3.0, 30, 1e-5), (1.0, 10.0, 30, 1e-5))
for q, target, steps, delta in targets:
    common = {"query": "noise", "sampling_rate": q, "target_epsilon": target, "rounds": steps, "delta": delta}
    queries += [common, dict(common, orders=INTEGER_ORDERS)]
answers = iter(zk0(queries))

for q, z, steps, delta in grid:
    for name, ours, theirs in (
        ("opacus", next(answers)["epsilon"], opacus_epsilon(q, z, steps, delta)),
        ("dp_accounting", next(answers)["epsilon"], google_epsilon(q, z, steps, delta)),
    ):
        checked += 1
        if not close(ours, theirs, 1e-6):
            failures.append(f"epsilon q={q} z={z} rounds={steps} delta={delta}: zk0 {ours!r}, {name} {theirs!r}")

for q, target, steps, delta in targets:
    ours = next(answers)["noise_multiplier"]
    ours_integer = next(answers)["noise_multiplier"]
    opacus_z = get_noise_multiplier(target_epsilon=target, target_delta=delta, sample_rate=q, steps=steps, accountant="rdp",
                                    epsilon_tolerance=1e-7)
    google_z = dp_accounting.calibrate_dp_mechanism(google_accountant, lambda s: google_event(q, s, steps), target, delta,
                                                    dp_accounting.LowerEndpointAndGuess(0.01, 1.0), tol=1e-7)
    for name, mine, theirs in (("opacus", ours, opacus_z), ("dp_accounting", ours_integer, google_z)):
        checked += 1
        if not close(mine, theirs, 1e-5):
            failures.append(f"noise q={q} target={target} rounds={steps}: zk0 {mine!r}, {name} {theirs!r}")
    # What it found keeps the target by the other accountant too.
    if opacus_epsilon(q, ours, steps, delta) > target * (1 + 1e-9):
        failures.append(f"noise q={q} target={target} rounds={steps}: z={ours} gives Opacus an epsilon above the target")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"accountant_reference: {checked} comparisons with opacus and dp_accounting agree")
