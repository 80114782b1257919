"""Running a `train { ... }` recipe, whatever engine does the arithmetic.

The data, the seeded streams, the schedule, early stopping, resume, the history and the
checkpoints are the recipe's, not an engine's: a NumPy run and a torch run of one recipe read
the same batches in the same order and write the same run folder. An engine (netspec.engine
for NumPy) provides the `Trainer` of `loop.py`: forward and loss on a batch, then the update.
"""
