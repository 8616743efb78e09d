"""LeRobot's own SmolVLA as the reference for tests/smolvla_parity_test.cpp (test-only).

  backbone DIR CONFIG.json only the backbone folder (SmolVLM config.json and a small byte-level
                           BPE tokenizer); examples/smolvla-tiny/backbone was written with it
  build DIR CONFIG.json    a SmolVLA with random weights from LeRobot's code, in the size CONFIG
                           gives (backbone, cameras, chunk), saved with save_pretrained to DIR;
                           its SmolVLM backbone config (and a tokenizer) go to DIR/backbone
  inputs DIR OUT SEED      random inputs for DIR's policy: images, state, tokens, noise, time,
                           action, action_is_pad (zk0 policy run's input names)
  bench DIR BATCH STEPS DEVICE
                           LeRobot's training step (forward, backward, gradient clip, AdamW on the
                           trainable parameters) on DIR's policy: prints samples/s as JSON
  processors DIR OUT       load DIR's processor files with LeRobot's pipelines and write the
                           normalised observation.state [1..S] and the unnormalised action [1..A]
  trainable DIR OUT.json   for each of the 8 settings of train_expert_only, freeze_vision_encoder
                           and train_state_proj ("TFT" ...), the names of the parameters LeRobot
                           builds DIR's policy with requires_grad
  run DIR INPUTS OUT       load DIR with SmolVLAPolicy.from_pretrained and write what zk0 policy
                           run writes: prefix embeddings, per-layer keys/values, the velocity
                           (denoise_step), elementwise losses (VLAFlowMatching.forward), losses,
                           gradients of the trainable parameters, a sampled chunk

Everything runs in float32 on CPU (bench on CUDA: in LeRobot's own dtypes). Nothing touches the network: the backbone is a local folder.
"""
import json
import os
import sys
import types

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast, SmolVLMConfig  # noqa: E402

try:
    import av  # noqa: F401, E402  LeRobot's dataset modules import PyAV when SmolVLA's are imported
except ImportError:
    # The GPU check's machine has no PyAV (its wheel, FFmpeg inside, is 40 MB of the 64 MB carried)
    # and nothing here decodes video: a stand-in lets LeRobot's modules import. torchvision.io
    # looks for PyAV once, when imported: it must find none before the stand-in exists.
    import importlib.machinery  # noqa: E402

    import torchvision.io  # noqa: F401, E402

    stand_in = types.ModuleType("av")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("av", None)
    # Module-level defaults in lerobot.datasets.video_utils name PyAV's (FFmpeg's) log levels.
    stand_in.logging = types.SimpleNamespace(ERROR=16, WARNING=24, INFO=32, DEBUG=48)
    sys.modules["av"] = stand_in

import lerobot.policies.smolvla.smolvlm_with_expert as smolvlm_with_expert  # noqa: E402
from lerobot.configs.types import FeatureType, PolicyFeature  # noqa: E402
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig  # noqa: E402
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy, make_att_2d_masks  # noqa: E402

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>", "<global-img>",
           "<end_of_utterance>"]


def use_local_processor():
    """SmolVLMWithExpertModel loads a whole AutoProcessor only for the tokenizer's image token ids,
    which SmolVLA uses only with add_image_special_tokens. The test backbone folder has a tokenizer
    and a config but no image processor, so the processor is the tokenizer alone."""

    def from_pretrained(path, *args, **kwargs):
        tok = PreTrainedTokenizerFast.from_pretrained(path)
        tok.fake_image_token_id = tok.convert_tokens_to_ids("<fake_token_around_image>")
        tok.global_image_token_id = tok.convert_tokens_to_ids("<global-img>")
        return types.SimpleNamespace(tokenizer=tok)

    smolvlm_with_expert.AutoProcessor = types.SimpleNamespace(from_pretrained=from_pretrained)


def use_exact_patch_positions():
    """transformers 4.55.1 to at least 4.57.6 compute the vision tower's patch position ids as
    bucketize(i/n * (1 - 1e-6)), which lands every patch but the first in the previous bucket
    (huggingface/transformers#41190): SmolVLM's vision embeddings changed under checkpoints
    trained before, smolvla_base among them. zk0 uses the positions those checkpoints were trained
    with (0..N-1 on the full grid), as transformers 4.54 computed them; so does the reference."""
    from transformers.models.smolvlm import modeling_smolvlm

    def forward(self, pixel_values, patch_attention_mask):
        batch_size, _, max_im_h, max_im_w = pixel_values.shape
        embeddings = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        max_h, max_w = max_im_h // self.patch_size, max_im_w // self.patch_size
        boundaries = torch.arange(1 / self.num_patches_per_side, 1.0, 1 / self.num_patches_per_side)
        position_ids = torch.full(size=(batch_size, max_h * max_w), fill_value=0)
        for b, mask in enumerate(patch_attention_mask):
            coords_h = torch.arange(0, 1 - 1e-6, 1 / mask[:, 0].sum())
            coords_w = torch.arange(0, 1 - 1e-6, 1 / mask[0].sum())
            bucket_h = torch.bucketize(coords_h, boundaries, right=True)
            bucket_w = torch.bucketize(coords_w, boundaries, right=True)
            position_ids[b][mask.view(-1).cpu()] = (bucket_h[:, None] * self.num_patches_per_side + bucket_w).flatten()
        return embeddings + self.position_embedding(position_ids.to(pixel_values.device))

    modeling_smolvlm.SmolVLMVisionEmbeddings.forward = forward


def write_backbone(path, spec):
    os.makedirs(path, exist_ok=True)
    text = spec["text"]
    config = SmolVLMConfig(
        text_config={"model_type": "llama", "hidden_size": text["hidden"], "intermediate_size": text["intermediate"],
                     "num_attention_heads": text["heads"], "num_key_value_heads": text["kv_heads"],
                     "head_dim": text["hidden"] // text["heads"], "num_hidden_layers": text["layers"],
                     "vocab_size": spec["vocab"], "rms_norm_eps": 1e-5, "tie_word_embeddings": False},
        vision_config={"hidden_size": spec["vision"]["hidden"], "intermediate_size": spec["vision"]["intermediate"],
                       "num_hidden_layers": spec["vision"]["layers"], "num_attention_heads": spec["vision"]["heads"],
                       "image_size": spec["image_size"], "patch_size": spec["patch_size"]},
        scale_factor=spec["scale_factor"],
        vocab_size=spec["vocab"],
    )
    config.save_pretrained(path)
    # A byte-level BPE like SmolLM2's, trained small so that the vocabulary fits the test model.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=spec["vocab"] - 8, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["pick up the red cube and put it in the box", "open the drawer", "push the green block to the left",
              "stack the cubes", "grasp the cup by its handle"] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|im_end|>", truncation_side="left")
    fast.save_pretrained(path)


def build(path, config_file):
    spec = json.load(open(config_file))
    backbone = os.path.join(os.path.abspath(path), "backbone")
    write_backbone(backbone, spec)
    use_local_processor()
    size = spec["image_size"]
    width, height = spec.get("resize", [size, size])
    # Not in sorted order: the prefix must take the cameras in input_features' order.
    names = spec.get("camera_names", ["top", "left", "right", "wrist"])[: spec["cameras"]]
    cameras = {f"observation.images.{name}": PolicyFeature(type=FeatureType.VISUAL, shape=(3, height, width))
               for name in names}
    cfg = SmolVLAConfig(
        vlm_model_name=backbone, load_vlm_weights=False, num_vlm_layers=spec["text"]["vlm_layers"],
        chunk_size=spec["chunk"], n_action_steps=spec["chunk"], max_state_dim=spec["max_state_dim"],
        max_action_dim=spec["max_action_dim"], resize_imgs_with_padding=(width, height), tokenizer_max_length=16,
        add_image_special_tokens=spec.get("add_image_special_tokens", False),
        attention_mode=spec.get("attention_mode", "cross_attn"),
        train_expert_only=spec.get("train_expert_only", True),
        freeze_vision_encoder=spec.get("freeze_vision_encoder", True),
        train_state_proj=spec.get("train_state_proj", True),
        num_steps=10, expert_width_multiplier=spec["expert_width_multiplier"],
        self_attn_every_n_layers=spec["self_attn_every_n_layers"], empty_cameras=spec.get("empty_cameras", 0),
        pad_language_to="max_length", device="cpu",
        input_features={**cameras, "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(spec["state"],))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(spec["action"],))},
    )
    torch.manual_seed(spec.get("seed", 0))
    policy = SmolVLAPolicy(cfg)
    with torch.no_grad():  # norms start at 1 and biases at 0: perturb so that every tensor matters
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    policy.float().save_pretrained(path)


def load(path):
    use_local_processor()
    use_exact_patch_positions()
    policy = SmolVLAPolicy.from_pretrained(path)
    return policy.float().eval()


def make_inputs(path, out, seed):
    policy = load(path)
    cfg = policy.config
    g = torch.Generator().manual_seed(int(seed))
    b, h = 2, cfg.chunk_size
    size = cfg.resize_imgs_with_padding[0]
    tensors = {}
    for i, key in enumerate(cfg.image_features):
        if "empty_camera" in key:
            continue
        # Not the model's size and not square: resize_with_pad scales and pads on the left/top.
        shape = (b, 3, size * 3 // 4 + i, size + 2 * i)
        tensors[key] = torch.rand(shape, generator=g)
    tensors["observation.state"] = torch.randn(b, cfg.input_features["observation.state"].shape[0], generator=g)
    length = cfg.tokenizer_max_length
    vocab = policy.model.vlm_with_expert.config.text_config.vocab_size
    tensors["observation.language.tokens"] = torch.randint(0, vocab, (b, length), generator=g)
    mask = torch.zeros(b, length, dtype=torch.bool)
    mask[0, :5] = True
    mask[1, :length - 3] = True
    tensors["observation.language.attention_mask"] = mask
    tensors["noise"] = torch.randn(b, h, cfg.max_action_dim, generator=g)
    tensors["time"] = torch.tensor([0.3, 0.85])
    tensors["action"] = torch.randn(b, h, cfg.output_features["action"].shape[0], generator=g)
    is_pad = torch.zeros(b, h, dtype=torch.bool)
    is_pad[1, h // 2:] = True
    tensors["action_is_pad"] = is_pad
    save_file({k: v.contiguous() for k, v in tensors.items()}, out)


def run(path, inputs_file, out):
    policy = load(path)
    cfg = policy.config
    model = policy.model
    x = load_file(inputs_file)
    batch = {k: v for k, v in x.items() if k.startswith("observation.")}
    images, img_masks = policy.prepare_images(batch)
    state = policy.prepare_state(batch)
    tokens, lang_masks = batch["observation.language.tokens"], batch["observation.language.attention_mask"]
    result = {}
    with torch.no_grad():
        prefix, pad, att = model.embed_prefix(images, img_masks, tokens, lang_masks, state=state)
        result["prefix.embeddings"] = prefix
        result["prefix.pad_mask"] = pad
        _, kv = model.vlm_with_expert.forward(attention_mask=make_att_2d_masks(pad, att),
                                              position_ids=torch.cumsum(pad, dim=1) - 1, past_key_values=None,
                                              inputs_embeds=[prefix, None], use_cache=True, fill_kv_cache=True)
        for layer, entry in kv.items():
            result[f"kv.{layer}.key"] = entry["key_states"]
            result[f"kv.{layer}.value"] = entry["value_states"]
        actions = model.sample_actions(images, img_masks, tokens, lang_masks, state, noise=x["noise"])
        result["actions"] = actions[:, :, : cfg.output_features["action"].shape[0]]
        t = x["time"][:, None, None]
        actions_padded = policy.prepare_action({"action": x["action"]})
        x_t = t * x["noise"] + (1 - t) * actions_padded
        result["velocity"] = model.denoise_step(prefix_pad_masks=pad, past_key_values=kv, x_t=x_t, timestep=x["time"])

    # Training path with autograd: LeRobot's elementwise losses, its own loss, and the masked
    # reduction of current LeRobot (padded steps and padded action dims excluded).
    policy.train()
    losses = model.forward(images, img_masks, tokens, lang_masks, state, actions_padded, x["noise"], x["time"])
    result["losses"] = losses.detach()
    unmasked, _ = policy.forward({**batch, "action": x["action"]}, noise=x["noise"], time=x["time"])
    result["loss.unmasked"] = unmasked.detach()
    a = cfg.output_features["action"].shape[0]
    keep = (~x["action_is_pad"]).unsqueeze(-1).float()
    masked = (losses[:, :, :a] * keep).sum() / torch.clamp_min(keep.sum() * a, 1)
    result["loss.masked"] = masked.detach()
    masked.backward()
    for name, p in policy.named_parameters():
        if p.requires_grad:
            result["grad." + name] = p.grad if p.grad is not None else torch.zeros_like(p)
    save_file({k: v.detach().contiguous() for k, v in result.items()}, out)


def trainable(path, out):
    from lerobot.configs.policies import PreTrainedConfig

    use_local_processor()
    sets = {}
    for flags in ["TTT", "TTF", "TFT", "TFF", "FTT", "FTF", "FFT", "FFF"]:
        cfg = PreTrainedConfig.from_pretrained(path)
        cfg.train_expert_only, cfg.freeze_vision_encoder, cfg.train_state_proj = (f == "T" for f in flags)
        policy = SmolVLAPolicy(cfg)
        sets[flags] = sorted(name for name, p in policy.named_parameters() if p.requires_grad)
    json.dump(sets, open(out, "w"), indent=1)


def bench(path, batch_size, steps, device):
    import time

    # On CPU both sides compute in float32; on CUDA LeRobot keeps the dtypes it loads and trains
    # with (zk0's frozen backbone is bfloat16 there): the JSON says which, so that a figure is read
    # against what was compared.
    use_local_processor()
    use_exact_patch_positions()
    policy = SmolVLAPolicy.from_pretrained(path)
    policy = (policy.float() if device == "cpu" else policy).to(device)
    policy.train()
    dtypes = {}
    for p in policy.parameters():
        dtypes[str(p.dtype)] = dtypes.get(str(p.dtype), 0) + p.numel()
    cfg = policy.config
    size = cfg.resize_imgs_with_padding[0]
    g = torch.Generator().manual_seed(0)
    b, h = int(batch_size), cfg.chunk_size
    batch = {key: torch.rand(b, 3, size, size, generator=g) for key in cfg.image_features if "empty_camera" not in key}
    batch["observation.state"] = torch.randn(b, cfg.input_features["observation.state"].shape[0], generator=g)
    batch["observation.language.tokens"] = torch.randint(0, 200, (b, cfg.tokenizer_max_length), generator=g)
    batch["observation.language.attention_mask"] = torch.ones(b, cfg.tokenizer_max_length, dtype=torch.bool)
    batch["action"] = torch.randn(b, h, cfg.output_features["action"].shape[0], generator=g)
    batch = {k: v.to(device) for k, v in batch.items()}
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=1e-10)

    def step():
        loss, _ = policy.forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    # The median step: a shared machine's stalls would otherwise decide the figure.
    seconds = []
    for _ in range(int(steps)):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    median = sorted(seconds)[len(seconds) // 2]
    result = {"samples_per_second": b / median, "threads": torch.get_num_threads(), "parameter_dtypes": dtypes}
    if device == "cuda":
        result["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(result))


def processors(path, out):
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    policy = load(path)
    cfg = policy.config
    pre = PolicyProcessorPipeline.from_pretrained(path, config_filename="policy_preprocessor.json")
    post = PolicyProcessorPipeline.from_pretrained(path, config_filename="policy_postprocessor.json",
                                                   to_transition=policy_action_to_transition,
                                                   to_output=transition_to_policy_action)
    size = cfg.resize_imgs_with_padding[0]
    state_dim = cfg.input_features["observation.state"].shape[0]
    action_dim = cfg.output_features["action"].shape[0]
    batch = {key: torch.rand(3, size, size) for key in cfg.image_features if "empty_camera" not in key}
    batch["observation.state"] = torch.arange(1, state_dim + 1, dtype=torch.float32)
    batch["task"] = "pick up the cube"
    processed = pre(batch)
    action = post(torch.arange(1, action_dim + 1, dtype=torch.float32)[None])
    save_file({"observation.state": processed["observation.state"].contiguous(),
               "observation.language.tokens": processed["observation.language.tokens"].contiguous(),
               "action": action.contiguous()}, out)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "backbone":
        write_backbone(sys.argv[2], json.load(open(sys.argv[3])))
    elif command == "build":
        build(sys.argv[2], sys.argv[3])
    elif command == "inputs":
        make_inputs(sys.argv[2], sys.argv[3], sys.argv[4])
    elif command == "bench":
        bench(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif command == "processors":
        processors(sys.argv[2], sys.argv[3])
    elif command == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    elif command == "trainable":
        trainable(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
