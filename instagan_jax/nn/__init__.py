"""Building blocks every method uses: pure layer functions, NNX modules, losses, model config."""
