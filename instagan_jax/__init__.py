"""instagan-jax: instance-aware unpaired image-to-image translation (InstaGAN) in JAX/Flax NNX."""

__version__ = "0.1.0"
