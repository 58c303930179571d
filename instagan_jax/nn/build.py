"""The model section of a config, dtypes, and building, initialising and calling modules."""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax.nn.modules import UPSAMPLERS, set_compute_dtype


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The architecture fields every method's model section has (reference defaults); a method's own
    section (`Method.sections`) subclasses it with its fields."""

    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    image_channels: int = 3
    dtype: str = "float32"  # parameters (and compute); "float64" for exact comparisons (needs x64)
    # Convs and matmuls: "float32" computes in `dtype` (float32, or float64 for a float64 model);
    # "bfloat16" takes bf16 operands there (mixed precision: parameters, Adam, norm statistics and
    # losses stay float32). Only with dtype float32.
    compute_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"model.compute_dtype must be one of {list(COMPUTE_DTYPES)}, got {self.compute_dtype!r}")
        if self.compute_dtype == "bfloat16" and self.dtype != "float32":
            raise ValueError(f"model.compute_dtype bfloat16 needs model.dtype float32 (mixed precision keeps "
                             f"float32 parameters), got model.dtype {self.dtype!r}")


    def beyond_reference(self) -> list[str]:
        """The `model.key=value` settings of this section that the reference's networks do not have
        (such a model cannot be written as, or read from, the reference's state_dicts)."""
        return []


@dataclasses.dataclass(frozen=True)
class ResnetModel(ModelConfig):
    """The model section of the methods with the reference's ResNet generator (InstaGAN, CycleGAN).

    `upsample`: the decoder's two 2x upsamplings. "transpose" (the reference's): stride-2 transposed
    3x3 convs. "resize": nearest-neighbour 2x then a 3x3 conv, which cannot draw the period-4
    checkerboard of two stride-2 transposed convs (same parameter count; not in the reference).
    """

    upsample: str = "transpose"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.upsample not in UPSAMPLERS:
            raise ValueError(f"config key model.upsample: expected one of {sorted(UPSAMPLERS)}, got {self.upsample!r}")

    def beyond_reference(self) -> list[str]:
        return [] if self.upsample == "transpose" else [f"model.upsample={self.upsample}"]


DTYPES = {"float32": jnp.float32, "float64": jnp.float64}
# "float32": no reduced precision (compute in the parameter dtype); "bfloat16": bf16 conv/matmul operands.
COMPUTE_DTYPES = ("float32", "bfloat16")


def x64_scope(dtype: str):
    """A context enabling JAX's 64-bit types for a float64 model (and leaving them as they are otherwise)."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


@functools.partial(jax.jit, static_argnums=0)
def _apply_pure(graphdef: nnx.GraphDef, state: nnx.State, *args: jax.Array):
    module = nnx.merge(graphdef, state)
    return module(*args), nnx.state(module)


def apply(module: nnx.Module, *args: jax.Array):
    """Call a module compiled (jit), writing its new state (spectral-norm u, v) back into it."""
    graphdef, state = nnx.split(module)
    out, new_state = _apply_pure(graphdef, state, *args)
    nnx.update(module, new_state)
    return out


def _build(cls: type, config: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
    """`cls(config)` with every variable cast to `config.dtype` and, for a reduced
    `config.compute_dtype`, that compute dtype set on every submodule (`modules.set_compute_dtype`)."""
    dtype = DTYPES[config.dtype]
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("model.dtype float64 needs JAX's 64-bit mode: run inside nn.build.x64_scope('float64')")
    module = cls(config, rngs=rngs)
    nnx.update(module, jax.tree.map(lambda x: x.astype(dtype), nnx.state(module)))
    if config.compute_dtype != "float32":
        set_compute_dtype(module, config.compute_dtype)
    return module


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_state(cls: type, config: ModelConfig, key: jax.Array) -> nnx.State:
    return nnx.state(_build(cls, config, nnx.Rngs(params=key)))


def create(cls: type, config: ModelConfig, seed: int | jax.Array = 0):
    """A SetGenerator or SetDiscriminator with the reference's init, built in one compiled call.

    An int seed uses the 'rbg' PRNG, which XLA compiles ~4x faster than threefry for the ~50
    initializers. (Constructing the module directly works too but runs them eagerly, which is slow.)
    """
    key = jax.random.key(seed, impl="rbg") if isinstance(seed, int) else seed
    graphdef = nnx.graphdef(abstract(cls, config))
    return nnx.merge(graphdef, _init_state(cls, config, key))


def abstract(cls: type, config: ModelConfig):
    """A module with shapes but no values, to be filled (e.g. by a method's `reference.load_reference`)."""
    return nnx.eval_shape(lambda: _build(cls, config, nnx.Rngs(0)))
