#!/usr/bin/env python3
"""What transport.compression costs in loss and saves in bytes, measured on the examples.

examples/quickstart.yaml (four owners' AV1 LeRobot datasets, flow-matching policy) and
examples/smolvla-tiny.yaml (the tiny SmolVLA), each run with float32 uploads, bf16, int8
(block 4096), top-k 1% with error feedback and top-k 1% without it. Prints the server's final
held-out loss of each against float32's, and the bytes each client uploaded and downloaded per
round (means; downloads after the first round, the first being the whole global) against
float32's. The same seeds everywhere: the codecs are the only difference.

  bench/compression_utility.py [--bin build/bin] [--examples quickstart,smolvla-tiny] [--rounds R]
                               [--topk-fractions 0.01,0.05,...] [--smoke]
--topk-fractions: top-k with error feedback at each fraction (the first also without it).
--smoke: two rounds of five steps, quickstart only, float32 and top-k (CI keeps the script working; its figures are not judged).
"""
import argparse
import os
import re
import statistics
import tempfile

from example_runs import accepted_updates, prepare_datasets, run_example

def codecs(topk_fractions):
    out = [("float32", None), ("bf16", "{codec: bf16}"), ("int8", "{codec: int8, blockSize: 4096}")]
    for i, fraction in enumerate(topk_fractions):
        out.append((f"topk {fraction * 100:g}%", f"{{codec: topk, fraction: {fraction}}}"))
        if i == 0:
            out.append((f"topk {fraction * 100:g}%, no error feedback", f"{{codec: topk, fraction: {fraction}, errorFeedback: false}}"))
    return out


def with_compression(compression):
    def edit(spec):
        if "\n  transport:\n" in spec:
            return spec.replace("\n  transport:\n", f"\n  transport:\n    compression: {compression}\n", 1)
        return re.sub(r"\n  policy:\n", f"\n  transport:\n    compression: {compression}\n  policy:\n", spec, count=1)
    return edit


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "bin"))
    parser.add_argument("--examples", default="quickstart,smolvla-tiny")
    parser.add_argument("--rounds", type=int, default=0, help="default: the example's")
    parser.add_argument("--topk-fractions", default="0.01")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    all_codecs = codecs([float(f) for f in args.topk_fractions.split(",")])
    prepare_datasets(args.bin)
    examples = ["quickstart"] if args.smoke else args.examples.split(",")
    print("| example | codec | final server loss | vs float32 | up per client and round | vs float32 | down | vs float32 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="zk0-compression-utility-") as work:
        for example in examples:
            rounds = 2 if args.smoke else args.rounds or (10 if example == "quickstart" else 5)
            base_loss = base_up = base_down = None
            for label, compression in [all_codecs[0], all_codecs[3]] if args.smoke else all_codecs:
                tag = f"{example}-{re.sub('[^a-z0-9]+', '-', label)}"
                history = run_example(args.bin, work, example, tag, rounds, args.smoke, with_compression(compression) if compression else None)
                loss = history[-1]["server_eval_loss"]
                uploaded = statistics.mean(c["bytes_uploaded"] for c in accepted_updates(history))
                downloaded = statistics.mean(c["bytes_downloaded"] for c in accepted_updates(history[1:]))
                if base_loss is None:
                    base_loss, base_up, base_down = loss, uploaded, downloaded
                print(f"| {example} ({rounds} rounds) | {label} | {loss:.4f} | {loss / base_loss:.3f} | {uploaded / 1e6:.3f} MB | "
                      f"1/{base_up / uploaded:.1f} | {downloaded / 1e6:.3f} MB | 1/{base_down / downloaded:.1f} |")


if __name__ == "__main__":
    main()
