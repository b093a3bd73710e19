"""`python -m solo.generate RUN_DIR "MR" ...`: sentences for your own meaning representations from
a trained run (`make generate RUN=... MR="..."`).

It rebuilds the run's backbone from the run's own config.yaml (a random backbone from the run's
seed, as the run built it), loads its trained adapter (adapter/) and decodes with the run's
decoding settings, so an MR of the test set gets the run's own predictions.txt line. An MR may
be written as the E2E release does (`name[The Eagle], eatType[pub]`) or as microsoft/LoRA's files
do (`name : The Eagle | Type : pub`): it is given to the model in the notation of the run's data
setup (solo.data.mr_notation). MRs come from the command line, or one per line from `--file`
(`-` for stdin) or piped in; one sentence per MR is printed per line, in order (`--tsv`: MR, tab,
sentence). With no MR and a terminal, it loads the model once and answers each MR as it is typed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from solo.errors import SoloError, exit_on_solo_error
from solo.train.rundir import read_run_config


def _device(cfg: Any, device: str | None) -> str:
    """`device`, or the run's own trainer.device (auto where that device is not here)."""
    from solo.train.loop import resolve_device

    if device is not None:
        return device
    own = str(cfg.trainer.get("device", "auto"))
    try:
        resolve_device(own)
    except SoloError:
        return "auto"
    return own


def trained_model(run_dir: Path, device: str | None = None, cfg: Any = None) -> tuple[Any, Any, Any]:
    """(model with the run's trained adapter, tokenizer, config) in eval mode on `device`
    (None: the run's own trainer.device); `cfg`: the run's config if already read."""
    from transformers.utils import logging as hf_logging

    from solo.atomic import readable_directory
    from solo.methods import load_adapter
    from solo.models import load_backbone
    from solo.train.loop import resolve_device
    from solo.train.rng import seed_everything

    cfg = cfg if cfg is not None else read_run_config(run_dir)
    adapter = readable_directory(run_dir / "adapter")
    if adapter is None:
        raise SoloError(f"{run_dir} has no trained adapter yet (adapter/ is written when training ends); "
                        f"rerun the run's command to finish it")
    seed_everything(int(cfg.seed))  # a random backbone is rebuilt from the run's seed, as it trained
    hf_logging.disable_progress_bar()  # the sentences are the output; no loading bar beside them
    model, tokenizer = load_backbone(cfg.model)
    load_adapter(model, adapter)
    return model.to(resolve_device(_device(cfg, device))).eval(), tokenizer, cfg


class Generator:
    """A finished run's model, loaded once, that turns MRs into sentences as the run decodes its
    test set (`decode_overrides` changes decode.* settings, e.g. {"num_beams": 4})."""

    def __init__(self, run_dir: Path, *, device: str | None = None,
                 decode_overrides: dict[str, Any] | None = None, cfg: Any = None) -> None:
        from omegaconf import OmegaConf

        from solo.train.precision import apply_precision

        self.cfg = cfg if cfg is not None else read_run_config(run_dir)
        self.model, self.tokenizer, _ = trained_model(run_dir, device, self.cfg)
        self.decode_cfg = {**OmegaConf.to_container(self.cfg.decode, resolve=True),  # type: ignore[dict-item]
                           **(decode_overrides or {})}
        apply_precision(str(self.cfg.trainer.precision), next(self.model.parameters()).device)

    def __call__(self, mrs: list[str]) -> list[str]:
        import torch

        from solo.decode import decode_mrs_with_stats

        prompts = prompts_for(self.cfg, mrs)
        with torch.no_grad():
            texts, _ = decode_mrs_with_stats(self.model, self.tokenizer, prompts, self.decode_cfg)
        return texts


def prompts_for(cfg: Any, mrs: list[str]) -> list[str]:
    """`mrs` in the notation of the run's data setup, the prompt it was trained on, whichever
    notation the user wrote (a bad MR raises SoloError naming it)."""
    from solo.data.mr_notation import in_notation

    target = "lora" if str(cfg.data.setup) == "lora" else "official"
    return [in_notation(mr, target) for mr in mrs]


def generate(run_dir: Path, mrs: list[str], *, device: str | None = None,
             decode_overrides: dict[str, Any] | None = None) -> list[str]:
    """One sentence per MR, decoded as the run decodes its test set."""
    cfg = read_run_config(run_dir)
    prompts_for(cfg, mrs)  # a bad MR is named before the weights load
    return Generator(run_dir, device=device, decode_overrides=decode_overrides, cfg=cfg)(mrs)


def interactive(generator: Generator, tsv: bool) -> None:
    """One MR per line from a terminal, each answered as it is typed; Ctrl-D ends. A bad MR is
    one error line and the session goes on (the model stays loaded)."""
    print("type an MR per line, e.g. name[The Eagle], eatType[pub], food[French]; Ctrl-D ends",
          file=sys.stderr, flush=True)
    while True:
        print("MR> ", end="", file=sys.stderr, flush=True)
        try:
            mr = input().strip()
        except EOFError:
            print(file=sys.stderr)
            return
        if not mr:
            continue
        try:
            (text,) = generator([mr])
        except SoloError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            continue
        print(f"{mr}\t{text}" if tsv else text, flush=True)


def _read_mrs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    if args.file is not None and args.mrs:
        parser.error("give MRs on the command line or with --file, not both")
    if args.file is None and args.mrs:
        mrs = list(args.mrs)
    elif args.file in (None, "-"):  # no MR given and stdin is no terminal: the MRs are piped in
        mrs = sys.stdin.read().splitlines()
    else:
        try:
            mrs = Path(args.file).read_text(encoding="utf-8-sig").splitlines()
        except OSError as err:
            parser.error(f"--file {args.file}: {err.strerror or err}")
    mrs = [mr.strip() for mr in mrs if mr.strip()]
    if not mrs:
        parser.error('no MR given: e.g. "name[The Eagle], eatType[coffee shop], food[French]"')
    return mrs


@exit_on_solo_error
def main(argv: list[str] | None = None) -> None:
    from solo.schema import COUNT_ARGUMENT, Number, argparse_type

    parser = argparse.ArgumentParser(
        prog="python -m solo.generate",
        description="Sentences for your own MRs from a trained run (its backbone, adapter and decoding settings).")
    parser.add_argument("run_dir", type=Path, help="a run dir (runs/<name>/<setup>-<hash>) whose training finished")
    parser.add_argument("mrs", nargs="*", metavar="MR",
                        help='e.g. "name[The Eagle], eatType[coffee shop], food[French]" (none: read stdin, '
                             'or ask for MRs one by one on a terminal)')
    parser.add_argument("--file", default=None, help="read MRs from this file, one per line (- for stdin)")
    parser.add_argument("--tsv", action="store_true", help="print MR<TAB>sentence instead of the sentence alone")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N or auto (default: the run's trainer.device, as its predictions.txt)")
    parser.add_argument("--num-beams", type=COUNT_ARGUMENT, default=None,
                        help="beam size (default: the run's decode.num_beams)")
    parser.add_argument("--max-new-tokens", type=COUNT_ARGUMENT, default=None,
                        help="longest sentence in tokens (default: the run's decode.max_new_tokens)")
    parser.add_argument("--length-penalty", type=argparse_type(Number()), default=None,
                        help="a hypothesis scores log p / length ** this (default: the run's decode.length_penalty)")
    parser.add_argument("--no-repeat-ngram", type=argparse_type(Number(integer=True, low=0)), default=None,
                        help="no n-gram of this size twice in a sentence, 0 for none "
                             "(default: the run's decode.no_repeat_ngram_size)")
    args = parser.parse_args(argv)
    if args.device is not None:
        from solo.train.loop import resolve_device
        from solo.train.settings import is_device_name

        if not is_device_name(args.device):
            parser.error(f"--device {args.device}: give cpu, cuda, cuda:N or auto")
        try:
            resolve_device(args.device)
        except SoloError:
            parser.error(f"--device {args.device}: no such CUDA device is visible here; use cpu or auto")
    overrides = {key: value for key, value in
                 (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens),
                  ("length_penalty", args.length_penalty), ("no_repeat_ngram_size", args.no_repeat_ngram))
                 if value is not None}
    if args.file is None and not args.mrs and sys.stdin.isatty():
        try:
            interactive(Generator(args.run_dir, device=args.device, decode_overrides=overrides), args.tsv)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            raise SystemExit(130) from None
        return
    try:
        mrs = _read_mrs(args, parser)  # from a terminal's stdin, Ctrl-C can come here too
        texts = generate(args.run_dir, mrs, device=args.device, decode_overrides=overrides)
    except KeyboardInterrupt:
        print("interrupted; nothing decoded", file=sys.stderr)
        raise SystemExit(130) from None
    for mr, text in zip(mrs, texts, strict=True):
        print(f"{mr}\t{text}" if args.tsv else text, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
