"""Reference samples from LeRobot itself, for tests/lerobot_parity_test.cpp.

  write DIR CODEC        record a dataset with LeRobotDataset.create / add_frame / save_episode
                         (codec: libsvtav1 or h264), 3 episodes, 2 cameras, in the codebase
                         version of the LeRobot on the path: v3.0 from the venv's LeRobot, v2.1
                         with LeRobot 0.3.3 put first on PYTHONPATH
  convert ROOT           convert a v2.1 dataset in place with LeRobot's v2.1 -> v3.0 converter
  dump ROOT OUT I...     load ROOT with LeRobotDataset (action chunk of 50, as SmolVLA asks)
                         and write samples I... to OUT.safetensors

Nothing here touches the network: HF_HUB_OFFLINE is set and every dataset lives under ROOT.
"""
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import lerobot.datasets.lerobot_dataset as lerobot_dataset  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402

V21 = lerobot_dataset.CODEBASE_VERSION == "v2.1"

JOINTS = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos", "gripper.pos"]
FPS = 30
H, W = 96, 128


def frame_image(episode: int, frame: int, camera: int) -> np.ndarray:
    """A picture that changes every frame, so that a neighbouring frame cannot pass for it."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[..., 0] = (x * 2 + frame * 5 + camera * 40) % 256
    img[..., 1] = (y * 2 + episode * 60) % 256
    cx, cy = (frame * 3) % W, (frame * 2 + camera * 30) % H
    img[(x - cx) ** 2 + (y - cy) ** 2 < 100] = (255, 255, 0)
    return img


def write(root: str, codec: str) -> None:
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": JOINTS},
        "action": {"dtype": "float32", "shape": (6,), "names": JOINTS},
        "observation.images.front": {"dtype": "video", "shape": (H, W, 3), "names": ["height", "width", "channels"]},
        "observation.images.wrist": {"dtype": "video", "shape": (H, W, 3), "names": ["height", "width", "channels"]},
    }
    if V21:  # LeRobot 0.3.3 always encodes with its default codec unless told otherwise here
        import functools

        lerobot_dataset.encode_video_frames = functools.partial(lerobot_dataset.encode_video_frames, vcodec=codec)
        ds = LeRobotDataset.create("local/parity", fps=FPS, features=features, root=root, robot_type="so101_follower",
                                   use_videos=True)
    else:
        ds = LeRobotDataset.create("local/parity", fps=FPS, features=features, root=root, robot_type="so101_follower",
                                   use_videos=True, vcodec=codec)
    rng = np.random.default_rng(7)
    tasks = ["pick up the red cube", "open the drawer", "pick up the red cube"]
    for episode, length in enumerate([40, 23, 31]):
        state = rng.normal(size=6).astype(np.float32)
        for frame in range(length):
            action = (state + rng.normal(scale=0.1, size=6)).astype(np.float32)
            frame_data = {
                "observation.state": state,
                "action": action,
                "observation.images.front": frame_image(episode, frame, 0),
                "observation.images.wrist": frame_image(episode, frame, 1),
            }
            if V21:
                ds.add_frame(frame_data, task=tasks[episode])
            else:
                ds.add_frame({**frame_data, "task": tasks[episode]})
            state = action
        ds.save_episode()
    if not V21:
        ds.finalize()


def convert(root: str) -> None:
    from lerobot.datasets.v30.convert_dataset_v21_to_v30 import convert_dataset

    parent, name = os.path.split(os.path.abspath(root))
    convert_dataset(repo_id=name, root=parent, push_to_hub=False)


def dump(root: str, out: str, indices: list[int]) -> None:
    meta_fps = FPS
    ds = LeRobotDataset("local/dump", root=root, delta_timestamps={"action": [i / meta_fps for i in range(50)]})
    tensors, metadata = {}, {}
    for i in indices:
        item = ds[i]
        for key, value in item.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{i}/{key}"] = value.contiguous()
            elif isinstance(value, str):
                metadata[f"{i}/{key}"] = value
    metadata["size"] = str(len(ds))
    metadata["video_backend"] = str(ds.video_backend)
    save_file(tensors, out, metadata)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "write":
        write(args[0], args[1])
    elif command == "convert":
        convert(args[0])
    elif command == "dump":
        dump(args[0], args[1], [int(a) for a in args[2:]])
    else:
        sys.exit(f"unknown command {command}")
