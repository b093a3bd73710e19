"""Training: Hydra entry point, loop, loss, checkpoints/resume, run directories, wandb.

`python -m solo.train experiment=...` runs one experiment end to end (train -> decode -> score)
into a run directory whose layout is the contract in docs/DESIGN.md.
"""
