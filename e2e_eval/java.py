"""The two Java tools of the COCO caption pipeline, each started once per scoring call.

Both jars ship inside the `pycocoevalcap` wheel: the Stanford PTB tokenizer
(stanford-corenlp-3.4.1.jar) and METEOR 1.5 (meteor-1.5.jar with its English paraphrase table).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from e2e_eval.errors import E2EEvalError

INSTALL_HINT = "install a Java runtime (e.g. `apt-get install default-jre-headless`) or put `java` on PATH"
# Pinning the JVM's I/O encoding makes results independent of the user's locale; the official
# figures were produced with UTF-8 throughout.
_JVM_FLAGS = ["-Dfile.encoding=UTF-8", "-Dsun.stdout.encoding=UTF-8", "-Dsun.stderr.encoding=UTF-8"]
# Characters Java's line reader treats as line ends; inside one caption they would shift every
# following tokenizer output line, so they become spaces (the official wrapper only does this for
# "\n", but its file reader already splits on all of them).
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})
# The COCO wrapper drops these tokens after PTB tokenisation.
PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)


def java_executable() -> str:
    java = shutil.which("java")
    if java is None:
        raise E2EEvalError(f"`java` not found: METEOR and the PTB tokenizer need Java; {INSTALL_HINT}")
    return java


def _jar(subpackage: str, name: str) -> Path:
    """A jar next to a pycocoevalcap module (the package has no __init__, so no resources API)."""
    spec = importlib.util.find_spec(f"pycocoevalcap.{subpackage}")
    if spec is None or not spec.submodule_search_locations:
        raise E2EEvalError("pycocoevalcap is not installed; run `pip install pycocoevalcap`")
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        raise E2EEvalError(f"{path} is missing; reinstall pycocoevalcap (`pip install --force-reinstall pycocoevalcap`)")
    return path


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Lower-cased PTB tokens of each text, joined by spaces, with COCO's punctuation removed."""
    java = java_executable()
    jar = _jar("tokenizer", "stanford-corenlp-3.4.1.jar")
    with tempfile.TemporaryDirectory(prefix="e2e_eval-") as tmp:
        source = Path(tmp) / "captions.txt"
        source.write_text("\n".join(t.translate(_LINE_BREAKS) for t in texts), encoding="utf-8")
        cmd = [java, *_JVM_FLAGS, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", str(source)]
        done = subprocess.run(cmd, capture_output=True)
    if done.returncode != 0:
        raise E2EEvalError(f"the PTB tokenizer failed: {_last_line(done.stderr)}")
    lines = done.stdout.decode("utf-8").split("\n")
    if len(lines) < len(texts):
        raise E2EEvalError(f"the PTB tokenizer returned {len(lines)} lines for {len(texts)} texts")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATION) for line in lines[: len(texts)]]


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


class Meteor:
    """One METEOR 1.5 process in `-stdio` mode with the official flags (`-l en -norm`).

    Started early so the JVM loads its paraphrase table while the other metrics run.
    """

    def __init__(self) -> None:
        java = java_executable()
        jar = _jar("meteor", "meteor-1.5.jar")
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [java, *_JVM_FLAGS, "-jar", "-Xmx2G", str(jar), "-", "-", "-stdio", "-l", "en", "-norm"],
            cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )

    def corpus_score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Corpus METEOR: per-segment statistics, then one EVAL over all of them."""
        score_lines = []
        for hyp, refs in zip(hypotheses, references, strict=True):
            # Same clean-up as the COCO wrapper: only the hypothesis loses "|||" and double spaces.
            hyp = hyp.replace("|||", "").replace("  ", " ")
            score_lines.append(" ||| ".join(("SCORE", " ||| ".join(refs), hyp)))
        stats = self._exchange(score_lines, len(score_lines))
        eval_line = "EVAL" + "".join(f" ||| {s}" for s in stats)
        # EVAL answers one score per segment, then the corpus score.
        return float(self._exchange([eval_line], len(stats) + 1)[-1])

    def _exchange(self, lines: list[str], expected: int) -> list[str]:
        payload = "".join(f"{line}\n" for line in lines).encode("utf-8")
        # Write from a thread: METEOR answers while it reads, and a full stdout pipe would block it.
        writer = threading.Thread(target=self._write, args=(payload,), daemon=True)
        writer.start()
        answers = []
        for _ in range(expected):
            line = self._process.stdout.readline()
            if not line:
                self.close()
                self._stderr.seek(0)
                raise E2EEvalError(f"METEOR stopped early: {_last_line(self._stderr.read())}")
            answers.append(line.decode("utf-8").strip())
        writer.join()
        return answers

    def _write(self, payload: bytes) -> None:
        try:
            self._process.stdin.write(payload)
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # the reader reports the failure with METEOR's own message

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            self._process.kill()
        self._process.wait()
        self._stderr.close()

    def __enter__(self) -> Meteor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
