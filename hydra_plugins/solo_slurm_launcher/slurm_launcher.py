"""`SlurmLauncher`: hydra-submitit-launcher's, with a failed submission or job as one line.

configs/launcher/slurm.yaml selects it through `hydra.launcher._target_`; every setting is the
submitit launcher's own (hydra.launcher.partition, gpus_per_node, ...).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)

FIX = "check hydra.launcher (partition, gpus_per_node, gres; configs/launcher/slurm.yaml) against `sinfo`"
WAIT_INTERRUPTED = ("interrupted while waiting for the Slurm jobs; they go on running on the cluster "
                    "(`squeue --me`; `scancel` stops them); once they end, rerun the same command: "
                    "finished runs are skipped")
NO_SLURM = ("launcher=slurm needs Slurm (`srun`, `sbatch`) on PATH and this machine has no `srun`; "
            "run it on the cluster's login node, or drop launcher=slurm to run the jobs here")


def failure_line(err: BaseException, sweep_dir: Path) -> str:
    """submitit's multi-line error as one line: what Slurm said and where to look.

    submitit raises the same FailedJobError for an sbatch that refused the job as for a job that
    failed on the cluster; only the refusal carries sbatch's CalledProcessError as its cause.
    """
    from submitit.core.utils import FailedSubmissionError

    refused = isinstance(err, FailedSubmissionError) or isinstance(err.__cause__, subprocess.CalledProcessError)
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and set(line.strip()) != {"-"}]
    if refused:
        said = next((line for line in lines if line.startswith("sbatch:")), lines[-1] if lines else None)
        if said is None and isinstance(err.__cause__, subprocess.CalledProcessError):
            said = f"sbatch exited {err.__cause__.returncode}"
        return f"Slurm refused the sweep ({said or type(err).__name__}); {FIX}, then rerun the same command"
    last = lines[-1] if lines else type(err).__name__
    return (f"a Slurm job failed ({last}); its logs are under {sweep_dir / '.submitit'}; "
            "rerun the same command to resume it (finished runs are skipped)")


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from submitit.core.utils import FailedSubmissionError, UncompletedJobError

        if shutil.which("srun") is None:
            # submitit's own check is a traceback from deep inside Hydra's launch.
            self._drop_unlaunched_sweep_dir()
            print(f"error: {NO_SLURM}", file=sys.stderr)
            raise SystemExit(2)
        try:
            return super().launch(job_overrides, initial_job_idx)
        except (UncompletedJobError, FailedSubmissionError) as err:
            assert self.config is not None
            print(f"error: {failure_line(err, Path(str(self.config.hydra.sweep.dir)))}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            # submitit only waits here; the jobs are the cluster's, and a rerun while they run
            # would find their run dirs taken.
            print(f"error: {WAIT_INTERRUPTED}", file=sys.stderr)
            raise SystemExit(130) from None

    def _drop_unlaunched_sweep_dir(self) -> None:
        """Hydra writes the sweep's multirun.yaml before it launches; a sweep that never started
        leaves nothing else, so its folder goes too (anything more in it is kept)."""
        config = getattr(self, "config", None)
        if config is None:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        (sweep_dir / "multirun.yaml").unlink(missing_ok=True)
        try:
            sweep_dir.rmdir()
        except OSError:  # not empty, or already gone
            pass
