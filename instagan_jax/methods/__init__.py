"""The translation methods, side by side; the shared machinery lives in `instagan_jax.nn` and the
training loop in `instagan_jax.loop`."""
