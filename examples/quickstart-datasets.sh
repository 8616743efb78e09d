#!/usr/bin/env bash
# The datasets examples/quickstart.yaml trains on: LeRobot v3.0 and v2.1 datasets of SO-100-like
# arms, one task per robot owner and a fifth, unseen task for the server's evaluation, each with
# a rendered AV1 camera video. Written once into outputs/datasets/ and reused.
set -euo pipefail
zk0="${1:-build/bin/zk0}"
out=outputs/datasets
synth() {  # name version seed task
  [ -d "$out/$1" ] || "$zk0" dataset synth "$out/$1" --version "$2" --seed "$3" --task "$4" \
    --episodes 40 --episode-length 80 --cameras 1 --height 96 --width 128
}
synth pick-red-lego v3.0 1 "Put the red LEGO in the bin"
synth turn-right    v2.1 2 "turn to the right side"
synth rub-plush     v3.0 3 "rub the plush toy with the bottle"
synth mug-animal    v2.1 4 "put the stuffed animal in the mug"
synth two-cubes     v3.0 5 "Two cubes and two buckets"
