"""`SlurmLauncher`: hydra-submitit-launcher's, with a failed submission or job as one line.

configs/launcher/slurm.yaml selects it through `hydra.launcher._target_`; every setting is the
submitit launcher's own (hydra.launcher.partition, gpus_per_node, ...).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)

FIX = "check hydra.launcher (partition, gpus_per_node, gres; configs/launcher/slurm.yaml) against `sinfo`"


def failure_line(err: BaseException, sweep_dir: Path) -> str:
    """submitit's multi-line error as one line: what Slurm said and where to look."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and set(line.strip()) != {"-"}]
    said = next((line for line in lines if line.startswith("sbatch:")), None)
    if said is not None:
        return f"Slurm refused the sweep ({said}); {FIX}, then rerun the same command"
    last = lines[-1] if lines else type(err).__name__
    return (f"a Slurm job failed ({last}); its logs are under {sweep_dir / '.submitit'}; "
            "rerun the same command to resume it (finished runs are skipped)")


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from submitit.core.utils import FailedSubmissionError, UncompletedJobError

        try:
            return super().launch(job_overrides, initial_job_idx)
        except (UncompletedJobError, FailedSubmissionError) as err:
            assert self.config is not None
            print(f"error: {failure_line(err, Path(str(self.config.hydra.sweep.dir)))}", file=sys.stderr)
            raise SystemExit(2) from None
