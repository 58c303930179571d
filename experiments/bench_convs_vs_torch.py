"""Every conv shape of the reference architecture at one image size: ours (XLA CPU) against torch.

    python experiments/bench_convs_vs_torch.py [--size 128] [--repeats 5] [--threads N]

Where an iteration's time goes, conv by conv, and how fast the same conv runs in the PyTorch the
reference uses (oneDNN on x86). Rows are the distinct convs of one generator call (image branch: batch
1; mask branch: 2 masks, as with ins_per 2) and one discriminator call (2 masks), with the reference's
widths (ngf = ndf = 64, 9 residual blocks). Per row: the forward and the forward + backward (both
gradients: input and kernel) in ms, medians after warm-up with ours and torch timed in turns, and the
nominal GFLOP/s (fwd+bwd = 3x the forward's FLOPs). "per call" weighs each row by how often it runs in
one call of its network. The last row times a whole generator call (convs, norms, pads, activations)
in both, in turns: ours, and the reference's own `ResnetSetGenerator` imported from `--reference-dir`
(ours alone without it). Needs torch (`pip install -e '.[torch]'`).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax.methods import load_config
from instagan_jax.methods.instagan.networks import SetGenerator
from instagan_jax.nn import layers
from instagan_jax.nn.build import create

DEFAULT_REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "instagan-pytorch"
WARMUP_CALLS = 2
MASKS = 2


class ConvShape(NamedTuple):
    network: str
    name: str
    batch: int
    size: int  # input height and width
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    padding: int
    form: str  # "reflect", "zeros" or "transposed"
    per_call: int  # times it runs in one call of its network


def reference_convs(size: int, ngf: int = 64, n_blocks: int = 9) -> list[ConvShape]:
    """The convs of the reference's generator and discriminator at `size` (image batch 1, MASKS masks)."""
    s, m = size, MASKS
    rows = []
    for branch, batch, cin, width, out in (("img", 1, 3, 2 * ngf, 3), ("seg", m, 1, 3 * ngf, 1)):
        rows += [
            ConvShape("G", f"{branch} stem 7x7", batch, s, cin, ngf, 7, 1, 3, "reflect", 1),
            ConvShape("G", f"{branch} down1 3x3/2", batch, s, ngf, 2 * ngf, 3, 2, 1, "zeros", 1),
            ConvShape("G", f"{branch} down2 3x3/2", batch, s // 2, 2 * ngf, 4 * ngf, 3, 2, 1, "zeros", 1),
            ConvShape("G", f"{branch} res block 3x3", batch, s // 4, 4 * ngf, 4 * ngf, 3, 1, 1, "reflect", 2 * n_blocks),
            ConvShape("G", f"{branch} up1 3x3^T", batch, s // 4, 4 * width, 2 * width, 3, 2, 1, "transposed", 1),
            ConvShape("G", f"{branch} up2 3x3^T", batch, s // 2, 2 * width, width, 3, 2, 1, "transposed", 1),
            ConvShape("G", f"{branch} head 7x7", batch, s, width, out, 7, 1, 3, "reflect", 1),
        ]
    for branch, batch, cin in (("img", 1, 3), ("seg", m, 1)):
        rows += [ConvShape("D", f"{branch} conv1 4x4/2", batch, s, cin, ngf, 4, 2, 1, "zeros", 1),
                 ConvShape("D", f"{branch} conv2 4x4/2", batch, s // 2, ngf, 2 * ngf, 4, 2, 1, "zeros", 1),
                 ConvShape("D", f"{branch} conv3 4x4/2", batch, s // 4, 2 * ngf, 4 * ngf, 4, 2, 1, "zeros", 1)]
    rows += [ConvShape("D", "classifier1 4x4", 1, s // 8, 8 * ngf, 16 * ngf, 4, 1, 1, "zeros", 1),
             ConvShape("D", "classifier2 4x4", 1, s // 8 - 1, 16 * ngf, 1, 4, 1, 1, "zeros", 1)]
    return rows


def forward_flop(c: ConvShape) -> float:
    """Multiply-adds x 2 of the forward (a transposed conv: those of the conv it transposes)."""
    if c.form == "transposed":
        return 2.0 * c.batch * c.size * c.size * c.kernel**2 * c.in_ch * c.out_ch
    out = (c.size + 2 * c.padding - c.kernel) // c.stride + 1
    return 2.0 * c.batch * out * out * c.kernel**2 * c.in_ch * c.out_ch


def medians_in_turns(*calls, repeats: int) -> tuple[float, ...]:
    """Median ms of each callable, timed in turns (first, second, ..., first, ...) after warm-up, so that
    the machine's drift hits all of them."""
    for _ in range(WARMUP_CALLS):
        for fn in calls:
            fn()
    times = tuple([] for _ in calls)
    for _ in range(repeats):
        for fn, out in zip(calls, times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return tuple(1e3 * statistics.median(t) for t in times)


def ours_conv(c: ConvShape):
    if c.form == "transposed":
        return layers.conv_transpose2d_s2
    return lambda x, kernel, bias: layers.conv2d(x, kernel, bias, stride=c.stride, padding=c.padding,
                                                 pad_mode=c.form)


def ours_calls(c: ConvShape, x: np.ndarray, kernel: np.ndarray, bias: np.ndarray):
    """(forward, forward + both gradients) of our layer under jit, as callables that wait for the result."""
    conv = ours_conv(c)
    x, kernel, bias = (jnp.asarray(a) for a in (x, kernel, bias))
    cotangent = jnp.ones_like(conv(x, kernel, bias))
    forward = jax.jit(conv)
    grads = jax.jit(jax.grad(lambda x, kernel, bias: jnp.sum(conv(x, kernel, bias) * cotangent), argnums=(0, 1, 2)))
    return (lambda: jax.block_until_ready(forward(x, kernel, bias)),
            lambda: jax.block_until_ready(grads(x, kernel, bias)))


def torch_calls(c: ConvShape, x: np.ndarray, kernel: np.ndarray, bias: np.ndarray):
    """The same conv as the reference runs it (NCHW, ReflectionPad2d + Conv2d, ConvTranspose2d)."""
    import torch
    import torch.nn.functional as F
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    if c.form == "transposed":  # HWIO with torch's tap order -> (in, out, kh, kw)
        wt = torch.from_numpy(kernel.transpose(2, 3, 0, 1).copy()).requires_grad_(True)
    else:  # HWIO -> OIHW
        wt = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    bt = torch.from_numpy(bias.copy()).requires_grad_(True)

    def conv():
        if c.form == "transposed":
            return F.conv_transpose2d(xt, wt, bt, stride=2, padding=1, output_padding=1)
        if c.form == "reflect":
            return F.conv2d(F.pad(xt, (c.padding,) * 4, mode="reflect"), wt, bt)
        return F.conv2d(xt, wt, bt, stride=c.stride, padding=c.padding)

    with torch.no_grad():
        cotangent = torch.ones_like(conv())

    def forward():
        with torch.no_grad():
            conv()

    def forward_backward():
        xt.grad = wt.grad = bt.grad = None
        (conv() * cotangent).sum().backward()

    return forward, forward_backward


def bench(size: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    results = []
    for c in reference_convs(size):
        x = rng.standard_normal((c.batch, c.size, c.size, c.in_ch)).astype(np.float32)
        kernel = (rng.standard_normal((c.kernel, c.kernel, c.in_ch, c.out_ch)) / c.kernel / np.sqrt(c.in_ch)).astype(np.float32)
        bias = rng.standard_normal(c.out_ch).astype(np.float32)
        (ours_fwd, ours_both), (torch_fwd, torch_both) = ours_calls(c, x, kernel, bias), torch_calls(c, x, kernel, bias)
        forward = medians_in_turns(ours_fwd, torch_fwd, repeats=repeats)
        both = medians_in_turns(ours_both, torch_both, repeats=repeats)
        results.append({"conv": c, "ours": (forward[0], both[0]), "torch": (forward[1], both[1])})
        print(row(results[-1]), flush=True)
    return results


def row(r: dict) -> str:
    c, flop = r["conv"], forward_flop(r["conv"])
    (of, ob), (tf, tb) = r["ours"], r["torch"]
    return (f"| {c.network} | {c.name} | {c.batch}x{c.size}x{c.size}x{c.in_ch} -> {c.out_ch} | {c.per_call} "
            f"| {of:.2f} | {tf:.2f} | {ob:.2f} ({3 * flop / ob / 1e6:.0f}) | {tb:.2f} ({3 * flop / tb / 1e6:.0f}) "
            f"| {tb / ob:.2f}x |")


def totals(results: list[dict]) -> list[str]:
    """Per network: one call's convs, fwd+bwd, weighted by how often each runs."""
    lines = []
    for network in ("G", "D"):
        rows = [r for r in results if r["conv"].network == network]
        ours = sum(r["conv"].per_call * r["ours"][1] for r in rows)
        ref = sum(r["conv"].per_call * r["torch"][1] for r in rows)
        flop = sum(r["conv"].per_call * 3 * forward_flop(r["conv"]) for r in rows)
        lines.append(f"| {network} | one call, all convs, fwd+bwd | | | | | {ours:.1f} ({flop / ours / 1e6:.0f}) "
                     f"| {ref:.1f} ({flop / ref / 1e6:.0f}) | {ref / ours:.2f}x |")
    return lines


def whole_generator(size: int, reference_dir: Path, repeats: int) -> str:
    """One generator call, forward + parameter gradients of the sum of its outputs: ours and the reference's."""
    config = load_config("default", ["model.ngf=64", "model.n_blocks=9"]).model
    graphdef, params = nnx.split(create(SetGenerator, config, 0))
    # each mask covers the top half (the reference skips a mask that is -1 everywhere)
    inside = (np.where(np.arange(size)[:, None] < size // 2, 1.0, -1.0) * np.ones((1, MASKS, 1, size))).astype(np.float32)
    image = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    img, masks = jnp.asarray(image), jnp.asarray(inside)[..., None]
    valid = jnp.ones((1, MASKS), bool)

    def loss(params):
        out_img, out_masks = nnx.merge(graphdef, params)(img, masks, valid)
        return jnp.sum(out_img) + jnp.sum(out_masks)

    grads = jax.jit(jax.grad(loss))

    def ours_step():
        jax.block_until_ready(grads(params))

    if not (reference_dir / "models" / "networks.py").is_file():
        ours, = medians_in_turns(ours_step, repeats=repeats)
        return f"| G | whole generator call, fwd+bwd | | | | | {ours:.1f} | (no reference at {reference_dir}) | |"
    import torch
    sys.path.insert(0, str(reference_dir))
    from models.networks import ResnetSetGenerator
    norm = functools.partial(torch.nn.InstanceNorm2d, affine=False, track_running_stats=False)
    generator = ResnetSetGenerator(3, 3, 64, norm, n_blocks=9)
    inputs = torch.cat([torch.from_numpy(image.transpose(0, 3, 1, 2).copy()), torch.from_numpy(inside)], dim=1)

    def reference_step():
        generator.zero_grad()
        generator(inputs).sum().backward()

    ours, ref = medians_in_turns(ours_step, reference_step, repeats=repeats)
    return f"| G | whole generator call, fwd+bwd | | | | | {ours:.1f} | {ref:.1f} | {ref / ours:.2f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image height and width")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per entry")
    parser.add_argument("--threads", type=int, help="cores for both (CPU affinity, torch threads; default all)")
    parser.add_argument("--reference-dir", type=Path, default=DEFAULT_REFERENCE)
    args = parser.parse_args()
    if args.size % 8 or args.size < 24:
        parser.error(f"--size {args.size}: must be a multiple of 8 and at least 24 (the discriminator's last conv)")
    if args.threads:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
    try:
        import torch
    except ImportError:
        raise SystemExit("needs torch: pip install -e '.[torch]'") from None
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"{args.size}x{args.size}; jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; ms, medians of {args.repeats}; (GFLOP/s)\n")
    print("| net | conv | input -> out channels | per call | ours fwd | torch fwd | ours fwd+bwd | torch fwd+bwd "
          "| torch/ours |\n|---|---|---|---|---|---|---|---|---|")
    results = bench(args.size, args.repeats)
    print("\n".join(totals(results)))
    print(whole_generator(args.size, args.reference_dir, args.repeats))


if __name__ == "__main__":
    main()
