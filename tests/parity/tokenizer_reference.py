"""Golden token ids for tests/tokenizer_test.cpp.

Trains two small byte-level BPE tokenizers (GPT-2/SmolLM2 style, no network), saves their
tokenizer.json files under OUT_DIR and writes OUT_DIR/golden.json: the ids of each prompt from the
`tokenizers` library, and the input_ids/attention_mask of SmolVLA's prompt tokenization as LeRobot
runs it (SmolVLANewLineProcessor, then TokenizerProcessorStep, i.e. a PreTrainedTokenizerFast
called with max_length, truncation=True, padding, padding_side="right").

usage: tokenizer_reference.py OUT_DIR
"""

import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

MAX_LENGTH = 48
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = [
    "Pick up the red cube and place it in the bin.",
    "Push the green block to the left side of the table.",
    "Open the top drawer, then close it again.",
    "Grasp the cup by its handle and lift it 10 cm.",
    "Move the arm to the home position and stop.",
    "Stack 3 blocks: red on green, green on blue!",
    "Put the banana in the bowl; don't touch the apple.",
    "Insert the peg into the hole (carefully).",
    "Déposer le café sur la table, s'il vous plaît.",
    "Fold the towel in half, then in half again.",
    "Turn the valve 90 degrees clockwise.",
    "Wipe the whiteboard from top to bottom.",
    "Pour the water from the pitcher into the glass without spilling.",
    "Slide the yellow sponge towards the sink and drop it there.",
    "Rotate the screwdriver and tighten the bolt on the wooden board.",
    "Hang the jacket on the hook next to the door.",
    "Sort the coloured balls: reds to the left bin, blues to the right bin.",
    "Unplug the charger from the socket and coil the cable.",
    "Press the elevator button, wait for the doors, then step back.",
    "Transfer the strawberries from the basket onto the plate.",
    "Close the laptop lid slowly and push it under the shelf.",
    "Water the plant by tilting the watering can for 5 seconds.",
    "Le robot saisit la tasse et la pose délicatement à côté de l'assiette.",
    "Der Roboter öffnet die Schublade und legt den Löffel hinein.",
    "Scan the barcode, then place the parcel on the conveyor belt.",
    "Flip the pancake with the spatula and serve it on a warm plate.",
]

TASKS = [
    "Pick up the red cube and place it in the bin",
    "stack 3 blocks: red, green, blue! (2025)",
    "café ✓ — déposer l'objet",
    "",
    " ".join(["Grasp the cup by its handle, lift it, move it to the shelf and put it down gently."] * 6),
    "open the drawer\n",
    "  leading spaces\tand a tab",
    "grasp the <|endoftext|> marker",
    "🤖 move the arm 把杯子放在桌子上",
]


def train(pre_tokenizer, post_processor_fn):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.post_processor = post_processor_fn(tok)
    return tok


def variants():
    # As SmolLM2's tokenizer.json: digits split one by one, then GPT-2's byte-level regex split.
    smollm = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    yield "bytelevel", train(smollm, lambda t: processors.ByteLevel(trim_offsets=False)), "<|im_end|>"
    # A post-processor that adds a token, so truncation must leave room for it as transformers does;
    # a top-level ByteLevel with add_prefix_space, which transformers turns off at load time.
    bos = "<|im_start|>"
    yield (
        "bos_template",
        train(
            pre_tokenizers.ByteLevel(add_prefix_space=True),
            lambda t: processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, t.token_to_id(bos))]
            ),
        ),
        "<|endoftext|>",
    )


def lerobot_prompts(hf_tok, tasks, padding):
    """SmolVLA's preprocessor steps as LeRobot 0.4.4 builds them (make_smolvla_pre_post_processors)."""
    from lerobot.policies.smolvla.processor_smolvla import SmolVLANewLineProcessor
    from lerobot.processor import TokenizerProcessorStep
    from lerobot.processor.converters import create_transition
    from lerobot.processor.core import TransitionKey
    from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

    steps = [
        SmolVLANewLineProcessor(),
        TokenizerProcessorStep(tokenizer=hf_tok, padding=padding, padding_side="right", max_length=MAX_LENGTH),
    ]
    transition = create_transition(observation={}, complementary_data={"task": list(tasks)})
    for step in steps:
        transition = step(transition)
    obs = transition[TransitionKey.OBSERVATION]
    return obs[OBS_LANGUAGE_TOKENS], obs[OBS_LANGUAGE_ATTENTION_MASK]


def main():
    out_dir = sys.argv[1]
    golden = {"max_length": MAX_LENGTH, "tokenizers": []}
    batches = {"all": TASKS, "short": TASKS[:3]}
    for name, tok, pad_token in variants():
        path = os.path.join(out_dir, name, "tokenizer.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tok.save(path)
        hf = PreTrainedTokenizerFast(tokenizer_file=path, pad_token=pad_token)
        entry = {
            "name": name,
            "file": path,
            "vocab_size": tok.get_vocab_size(),
            "pad_id": hf.pad_token_id,
            # transformers' load-time override of a top-level ByteLevel's add_prefix_space.
            "transformers_add_prefix_space": hf.add_prefix_space,
            "encode": [
                {
                    "text": t,
                    "ids": tok.encode(t, add_special_tokens=False).ids,
                    "ids_special": tok.encode(t, add_special_tokens=True).ids,
                    "transformers_ids": hf(t, add_special_tokens=False)["input_ids"],
                }
                for t in TASKS
            ],
            "prompts": [],
        }
        for side in ("left", "right"):
            hf.truncation_side = side
            for padding in ("max_length", "longest"):
                for batch, tasks in batches.items():
                    texts = [t if t.endswith("\n") else f"{t}\n" for t in tasks]
                    enc = hf(
                        texts,
                        max_length=MAX_LENGTH,
                        truncation=True,
                        padding=padding,
                        padding_side="right",
                        return_tensors="pt",
                    )
                    # The same through LeRobot's own steps: they must agree.
                    ids, mask = lerobot_prompts(hf, tasks, padding)
                    assert ids.equal(enc["input_ids"]), (name, side, padding, batch)
                    assert mask.equal(enc["attention_mask"].bool()), (name, side, padding, batch)
                    entry["prompts"].append(
                        {
                            "batch": batch,
                            "tasks": list(tasks),
                            "truncation_side": side,
                            "padding": padding,
                            "input_ids": enc["input_ids"].tolist(),
                            "attention_mask": enc["attention_mask"].tolist(),
                        }
                    )
        golden["tokenizers"].append(entry)
    with open(os.path.join(out_dir, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
