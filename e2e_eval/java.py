"""The two Java tools of the COCO caption pipeline, each in one long-lived JVM.

Both jars ship inside the `pycocoevalcap` wheel: the Stanford PTB tokenizer
(stanford-corenlp-3.4.1.jar) and METEOR 1.5 (meteor-1.5.jar with its English paraphrase table).
Two small Java programs in `jvm/` (compiled once into the cache folder) keep them fast:
`PtbTokenizerServer` runs the tokenizer's own command line once per request in one JVM, and
`MeteorForReferences` starts METEOR on its paraphrase table cut to the entries that can match the
references (loading the whole table was most of the run time; the cut gives the same scores, see
the argument in the Java file). Where Java cannot compile them (a runtime without the
`jdk.compiler` module), each tool runs as the official scorer runs it: one tokenizer JVM per call,
METEOR on the whole table.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from e2e_eval.errors import E2EEvalError

INSTALL_HINT = "install a Java runtime (e.g. `apt-get install default-jre-headless`) or put `java` on PATH"
# Pinning the JVM's I/O encoding makes results independent of the user's locale; the official
# figures were produced with UTF-8 throughout.
_JVM_FLAGS = ["-Dfile.encoding=UTF-8", "-Dsun.stdout.encoding=UTF-8", "-Dsun.stderr.encoding=UTF-8"]
# The helpers' JVMs only ever run a few seconds of work: the quick (C1) JIT alone costs half the
# CPU of the tiered one on the first system METEOR scores, and about as much on later ones.
_HELPER_JVM_FLAGS = [*_JVM_FLAGS, "-XX:TieredStopAtLevel=1"]
_METEOR_ARGS = ["-", "-", "-stdio", "-l", "en", "-norm"]  # the official flags, stdio protocol
_PTB_FLAGS = ["-preserveLines", "-lowerCase"]
# Characters Java's line reader treats as line ends; inside one caption they would shift every
# following tokenizer output line, so they become spaces (the official wrapper only does this for
# "\n", but its file reader already splits on all of them).
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})
# The COCO wrapper drops these tokens after PTB tokenisation.
PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
_SOURCES = Path(__file__).with_name("jvm")


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


def _meteor_jar() -> Path:
    return _jar("meteor", "meteor-1.5.jar")


def _tokenizer_jar() -> Path:
    return _jar("tokenizer", "stanford-corenlp-3.4.1.jar")


@functools.cache
def cache_dir() -> Path:
    """Compiled helpers and cut paraphrase tables: `$E2E_EVAL_CACHE`, else ~/.cache/e2e_eval.

    Falls back to a folder of this process's where the cache cannot be written.
    """
    env = os.environ.get("E2E_EVAL_CACHE")
    base = Path(env).expanduser() if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "e2e_eval"
    try:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=base):
            pass
        return base
    except OSError:
        return Path(tempfile.mkdtemp(prefix="e2e_eval-cache-"))


def _fingerprint(*parts: bytes | str | Path) -> str:
    """A digest of strings, bytes and files (a file by its path, size and modification time)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            stat = part.stat()
            part = f"{part.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:20]


_COMPILING = threading.Lock()


def helper_classes() -> Path | None:
    """The folder of the compiled `jvm/` programs, or None where this Java cannot compile them."""
    with _COMPILING:  # the scorer's threads ask at once: one javac, not one each
        return _compiled_helpers()


@functools.cache
def _compiled_helpers() -> Path | None:
    java = java_executable()
    sources = sorted(_SOURCES.glob("*.java"))
    jars = [_meteor_jar(), _tokenizer_jar()]
    key = _fingerprint(Path(os.path.realpath(java)), *jars, *(s.read_bytes() for s in sources))
    target = cache_dir() / f"classes-{key}"
    if target.is_dir():
        return target
    building = Path(tempfile.mkdtemp(prefix=".classes-", dir=target.parent))
    done = subprocess.run(
        [java, "-m", "jdk.compiler/com.sun.tools.javac.Main", "-nowarn", "-encoding", "UTF-8",
         "-d", str(building), "-cp", os.pathsep.join(map(str, jars)), *map(str, sources)],
        capture_output=True,
    )
    if done.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        warnings.warn(
            f"e2e_eval could not compile its Java helpers ({_last_line(done.stderr)}); scoring the "
            "official, slower way (a Java runtime with the jdk.compiler module makes it fast)",
            stacklevel=2,
        )
        return None
    try:
        building.rename(target)
    except OSError:  # another process compiled them first
        shutil.rmtree(building, ignore_errors=True)
    return target


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def _close_quietly(pipe) -> None:
    try:
        pipe.close()
    except BrokenPipeError:
        pass  # the process is gone already


def _coco_tokens(line: str) -> str:
    return " ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATION)


class PtbTokenizer:
    """The PTB tokenizer as the COCO wrapper runs it (`-preserveLines -lowerCase`), one JVM for all calls."""

    def __init__(self) -> None:
        self._java = java_executable()
        self._folder = Path(tempfile.mkdtemp(prefix="e2e_eval-"))
        self._process: _LineProcess | None = None

    def tokenize(self, texts: Sequence[str]) -> list[str]:
        """Lower-cased PTB tokens of each text, joined by spaces, with COCO's punctuation removed."""
        source, output = self._folder / "captions.txt", self._folder / "captions.tok"
        source.write_text("\n".join(t.translate(_LINE_BREAKS) for t in texts), encoding="utf-8")
        if helper_classes() is None:
            text = self._run_once(source)
        else:
            self._request(source, output)
            text = output.read_text(encoding="utf-8")
        lines = text.split("\n")
        if len(lines) < len(texts):
            raise E2EEvalError(f"the PTB tokenizer returned {len(lines)} lines for {len(texts)} texts")
        return [_coco_tokens(line) for line in lines[: len(texts)]]

    def _run_once(self, source: Path) -> str:
        cmd = [self._java, *_JVM_FLAGS, "-cp", str(_tokenizer_jar()), "edu.stanford.nlp.process.PTBTokenizer",
               *_PTB_FLAGS, str(source)]
        done = subprocess.run(cmd, capture_output=True)
        if done.returncode != 0:
            raise E2EEvalError(f"the PTB tokenizer failed: {_last_line(done.stderr)}")
        return done.stdout.decode("utf-8")

    def _request(self, source: Path, output: Path) -> None:
        if self._process is None:
            classpath = os.pathsep.join([str(_tokenizer_jar()), str(helper_classes())])
            self._process = _LineProcess(
                [self._java, *_HELPER_JVM_FLAGS, "-cp", classpath, "PtbTokenizerServer", *_PTB_FLAGS],
                failure="the PTB tokenizer failed",
            )
        try:
            answer = self._process.exchange([f"{source}\t{output}"], 1)[0]
        except E2EEvalError:
            self._process = None  # it stopped (and is closed): the next call starts another
            raise
        if answer != "OK":
            raise E2EEvalError(f"the PTB tokenizer failed: {answer}")

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> PtbTokenizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """`PtbTokenizer().tokenize(texts)` in a JVM of its own."""
    with PtbTokenizer() as tokenizer:
        return tokenizer.tokenize(texts)


_METEOR_FAILURE = "METEOR stopped early"


class _LineProcess:
    """A helper JVM that answers lines on stdin with lines on stdout (METEOR's `-stdio` mode, the
    PTB tokenizer server). If it stops, the error is `failure` and its last stderr line."""

    def __init__(self, cmd: list[str], cwd: Path | None = None, *, failure: str) -> None:
        self._failure = failure
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )

    def exchange(self, lines: list[str], expected: int) -> list[str]:
        payload = "".join(f"{line}\n" for line in lines).encode("utf-8")
        # Write from a thread: METEOR answers while it reads, and a full stdout pipe would block it.
        writer = threading.Thread(target=self._write, args=(payload,), daemon=True)
        writer.start()
        answers = []
        for _ in range(expected):
            line = self._process.stdout.readline()
            if not line:
                self._stderr.seek(0)
                message = _last_line(self._stderr.read())
                self.close()
                raise E2EEvalError(f"{self._failure}: {message}")
            answers.append(line.decode("utf-8").strip())
        writer.join()
        return answers

    def _write(self, payload: bytes) -> None:
        try:
            self._process.stdin.write(payload)
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # the reader reports the failure with METEOR's own message

    def running(self) -> bool:
        return self._process.poll() is None

    def close(self) -> None:
        if self._process.poll() is None:
            _close_quietly(self._process.stdin)
            self._process.kill()
        self._process.wait()
        _close_quietly(self._process.stdin)
        _close_quietly(self._process.stdout)
        if not self._stderr.closed:
            self._stderr.close()


class Meteor:
    """METEOR 1.5 in `-stdio` mode with the official flags (`-l en -norm`).

    Given `references` (the PTB-tokenized references it will see), it runs on the paraphrase table
    cut to them, cached by their content: then it scores only systems whose references are among
    them (`covers`). Without, or where the helper cannot be compiled, it loads the whole table.

    With a cut table, up to `workers` processes (default: 2 where there are 2 cores) share a
    system's segments: METEOR scores each segment alone and the corpus score is one EVAL over all
    segments' statistics, so splitting them changes no figure. The others start once the first
    has cached the cut (a cut in each would only race), the first system waiting for it. The whole
    table (5 s of loading each) stays in one process.
    """

    def __init__(self, references: Sequence[str] | None = None, workers: int | None = None) -> None:
        java = java_executable()
        jar = _meteor_jar()
        self._cwd = jar.parent
        self._references: frozenset[str] | None = None
        self._table: Path | None = None
        self._workers = workers if workers is not None else min(2, os.cpu_count() or 1)
        classes = helper_classes() if references is not None else None
        if classes is None:
            self._cmd = [java, *_JVM_FLAGS, "-jar", "-Xmx2G", str(jar), *_METEOR_ARGS]
        else:
            self._references = frozenset(references)
            # Sorted and unique: the same references give the same cached table in any order.
            listed = "".join(f"{r}\n" for r in sorted(self._references)).encode("utf-8")
            key = _fingerprint(classes.name, jar, jar.parent / "data" / "paraphrase-en.gz", *_METEOR_ARGS, listed)
            self._table = cache_dir() / f"paraphrase-en-{key}.gz"
            self._folder = tempfile.TemporaryDirectory(prefix="e2e_eval-")
            refs = Path(self._folder.name) / "references.txt"
            refs.write_bytes(listed)
            self._cmd = [java, *_HELPER_JVM_FLAGS, "-Xmx2G", "-cp", os.pathsep.join([str(jar), str(classes)]),
                         "MeteorForReferences", str(refs), str(self._table), *_METEOR_ARGS]
        self._processes = [_LineProcess(self._cmd, self._cwd, failure=_METEOR_FAILURE)]
        self._more_workers()

    def _more_workers(self) -> None:
        """Start the other workers once the cut table is cached (a cut in each would only race)."""
        if self._table is None or not self._table.exists():
            return
        while len(self._processes) < self._workers:
            self._processes.append(_LineProcess(self._cmd, self._cwd, failure=_METEOR_FAILURE))

    def _await_cut(self) -> None:
        """While the first process cuts the table, wait for it where other workers will share the
        segments: each then loads the cut table beside the first, and the first system is split too."""
        if self._table is None or self._workers < 2 or len(self._processes) >= self._workers:
            return
        first = self._processes[0]
        while not self._table.exists() and first.running():
            time.sleep(0.02)  # a failed cut ends the process: the exchange then reports METEOR's error

    def covers(self, references: Sequence[str]) -> bool:
        """Whether this process scores against `references` as METEOR on the whole table would."""
        return self._references is None or self._references.issuperset(references)

    def corpus_score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Corpus METEOR: per-segment statistics, then one EVAL over all of them."""
        score_lines = []
        for hyp, refs in zip(hypotheses, references, strict=True):
            # Same clean-up as the COCO wrapper: only the hypothesis loses "|||" and double spaces.
            hyp = hyp.replace("|||", "").replace("  ", " ")
            score_lines.append(" ||| ".join(("SCORE", " ||| ".join(refs), hyp)))
        self._await_cut()
        self._more_workers()
        size = -(-len(score_lines) // len(self._processes)) or 1
        chunks = [score_lines[s:s + size] for s in range(0, len(score_lines), size)]
        if len(chunks) > 1:
            with ThreadPoolExecutor(len(chunks)) as pool:
                # Fewer chunks than processes only when there are fewer segments than processes.
                parts = list(pool.map(lambda job: job[0].exchange(job[1], len(job[1])),
                                      zip(self._processes, chunks, strict=False)))
        else:
            parts = [self._processes[0].exchange(chunk, len(chunk)) for chunk in chunks]
        stats = [line for part in parts for line in part]
        eval_line = "EVAL" + "".join(f" ||| {s}" for s in stats)
        # EVAL answers one score per segment, then the corpus score.
        return float(self._processes[0].exchange([eval_line], len(stats) + 1)[-1])

    def close(self) -> None:
        for process in self._processes:
            process.close()
        if self._references is not None:
            self._folder.cleanup()
