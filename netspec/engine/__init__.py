"""The NumPy back end: executor, initialisers, losses, optimizers, training loop."""
