"""The PyTorch reference (https://github.com/sangwoomo/instagan, BSD), imported unmodified from its source
folder for side-by-side runs; torch comes with `pip install -e '.[torch]'`.

    missing = reference_missing()            # None, or why it cannot run (with how to fix it)
    networks = import_reference().networks   # the reference's models/networks.py
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "instagan-pytorch"


def reference_missing(reference_dir: Path = REFERENCE_DIR) -> str | None:
    """Why the reference cannot run here (with how to fix it), or None."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install -e '.[torch]')"
    if not (reference_dir / "models" / "insta_gan_model.py").is_file():
        return f"no InstaGAN source at {reference_dir}"
    return None


def import_reference(reference_dir: Path = REFERENCE_DIR) -> types.ModuleType:
    """The reference's `models` package (its `networks`, `create_model`), from `reference_dir`.

    Its data code imports torchvision, which the models do not need: a stub stands in where torchvision
    is not installed.
    """
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        stub = types.ModuleType("torchvision")
        stub.transforms = types.ModuleType("torchvision.transforms")
        sys.modules.update({"torchvision": stub, "torchvision.transforms": stub.transforms})
    if str(reference_dir) not in sys.path:
        sys.path.insert(0, str(reference_dir))
    models = importlib.import_module("models")
    importlib.import_module("models.networks")
    return models


def reference_input(batch: dict, device: str = "cpu") -> dict:
    """Our batch (img_X (B,H,W,3), masks_X (B,K,H,W,1), valid_X (B,K), optional id_X) as the reference's
    `set_input` dict: NCHW images and (B,K,H,W) masks with the invalid slots all -1, on `device`."""
    import numpy as np
    import torch

    out = {}
    for d in ("A", "B"):
        segs = np.where(batch[f"valid_{d}"][:, :, None, None], batch[f"masks_{d}"][..., 0], -1.0)
        out[d] = torch.from_numpy(np.ascontiguousarray(batch[f"img_{d}"].transpose(0, 3, 1, 2), np.float32)).to(device)
        out[f"{d}_segs"] = torch.from_numpy(segs.astype(np.float32)).to(device)
        out[f"{d}_paths"] = [str(i) for i in batch.get(f"id_{d}", [f"synthetic_{d}_{i}" for i in range(len(segs))])]
    return out


def reference_instagan(arguments: dict[str, object], seed: int, device: str = "cpu",
                       reference_dir: Path = REFERENCE_DIR):
    """The reference's InstaGAN model built as its train.py builds it (`create_model` + `setup`), from
    command-line `arguments` {'ngf': 16, ...} beside the fixed ones here, with Python's, NumPy's and
    torch's generators seeded by `seed` (the reference draws from all three)."""
    import contextlib
    import io
    import random
    import tempfile

    import numpy as np
    import torch

    models = import_reference(reference_dir)
    from options.train_options import TrainOptions

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        argv = ["--dataroot", tmp, "--model", "insta_gan", "--name", "side_by_side", "--checkpoints_dir", tmp,
                "--gpu_ids", "0" if device == "cuda" else "-1", "--display_id", "-1"]
        for key, value in arguments.items():
            argv += [f"--{key}", str(value)]
        saved, sys.argv = sys.argv, ["train.py", *argv]
        try:
            opt = TrainOptions().parse()
        finally:
            sys.argv = saved
        model = models.create_model(opt)
        model.setup(opt)
    return model
