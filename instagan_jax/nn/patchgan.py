"""The fork's PatchGAN (`NLayerDiscriminator`): spectrally normalised 4x4 convs, one score per patch.

    conv(s2) lrelu, [conv(s2) norm lrelu] x (n_layers - 1), conv(s1) norm lrelu, conv(s1) [sigmoid]

Channel widths ndf * min(2^n, 8). With instance norm the middle convs have a bias, with batch norm
they do not (the norm's own bias takes its place), as the reference. Every call advances each conv's
spectral-norm vectors u, v once (the reference's one power iteration per forward).
"""

from __future__ import annotations

import jax
from flax import nnx

from instagan_jax.nn import layers
from instagan_jax.nn.modules import BatchNorm, SNConv, instance_norm, network_output

NORMS = ("instance", "batch")


class PatchDiscriminator(nnx.Module):
    """(B,H,W,C) -> patch scores (B, H/2^n - 2, W/2^n - 2, 1) for n_layers n; logits unless `sigmoid`."""

    def __init__(self, in_ch: int, ndf: int, *, n_layers: int = 3, norm: str = "instance",
                 sigmoid: bool = False, rngs: nnx.Rngs):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        widths = [ndf * min(2 ** n, 8) for n in range(n_layers + 1)]
        bias = norm == "instance"
        self.first = SNConv(in_ch, ndf, stride=2, rngs=rngs)
        self.convs = nnx.List([SNConv(widths[n - 1], widths[n], stride=2 if n < n_layers else 1, bias=bias,
                                      rngs=rngs) for n in range(1, n_layers + 1)])
        self.norms = nnx.List([BatchNorm(w, rngs=rngs) for w in widths[1:]]) if norm == "batch" else None
        self.last = SNConv(widths[-1], 1, stride=1, rngs=rngs)
        self.sigmoid = sigmoid

    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        """`train` picks batch statistics (True) or running ones (False) for batch norm."""
        h = layers.leaky_relu(self.first.step(x))
        for i, conv in enumerate(self.convs):
            h = conv.step(h)
            h = instance_norm(h) if self.norms is None else self.norms[i](h, train)
            h = layers.leaky_relu(h)
        h = network_output(self, self.last.step(h))  # float32 scores (and sigmoid) under bf16 compute
        return jax.nn.sigmoid(h) if self.sigmoid else h
