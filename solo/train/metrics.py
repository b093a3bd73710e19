"""`metrics.jsonl`: one JSON object a line, appended as training goes, trimmed on resume."""

from __future__ import annotations

import json
from pathlib import Path

from solo.train.atomic import write_text_atomic


class MetricsFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line torn by a crash mid-write: it and anything after are dropped
        return out

    def keep_until(self, step: int) -> None:
        """Drop records after `step`: a resumed run replays those steps and logs them again."""
        if not self.path.exists():
            return
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
