"""Hydra launcher `lockstep`: every job of a multirun in this process, advanced in lockstep.

`python -m solo.train -m launcher=lockstep seed=1,2,3` composes each job's config and hands them all
to solo.train.lockstep.run_lockstep (one optimiser step per run in turn, one CUDA stream per run).
"""
