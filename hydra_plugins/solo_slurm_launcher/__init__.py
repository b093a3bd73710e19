"""hydra-submitit-launcher's Slurm launcher with solo's one-line errors (configs/launcher/slurm.yaml).

A refused `sbatch` (a bad partition or GRES) or a job that died on the cluster surfaced as
submitit's traceback through Hydra; here it is one `error:` line naming the fix, exit 2.
"""
