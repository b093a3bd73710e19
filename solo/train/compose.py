"""Compose the training config the way `python -m solo.train` would, without running it; and
say in one line what is wrong with an override Hydra cannot apply."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import solo.config  # noqa: F401  (registers ${shared:...} before anything resolves)
from solo.errors import SoloError
from solo.paths import REPO_ROOT

CONFIG_DIR = REPO_ROOT / "configs"
LIST_SETTINGS = "python -m solo.train --cfg job lists every setting"


def _compose(overrides: Sequence[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="solo"):
        return compose(config_name="train", overrides=list(overrides))


def compose_train_config(overrides: list[str]) -> DictConfig:
    """configs/train.yaml with Hydra command-line style overrides applied."""
    from hydra.errors import HydraException

    try:
        return _compose(overrides)
    except HydraException as err:
        raise SoloError(explain(err, overrides)) from None


def explain(err: Exception, overrides: Sequence[str]) -> str:
    """Hydra's composition error as one line naming the override and the fix. Its own message
    is several lines and, for a typo'd key, suggests `+key=` (which only defers the error)."""
    message = str(err).strip()
    unknown = re.match(r"Could not (?:override|delete from config\.) '([^']+)'", message)
    if unknown:
        key = unknown.group(1)
        return f"{key}: no such setting ({_nearest_settings(key, overrides)}{LIST_SETTINGS})"
    appended = re.match(r"Could not append to config\. An item is already at '([^']+)'", message)
    if appended:
        key = appended.group(1)
        return f"+{key}: {key} is already set by the composed config; drop the `+` ({key}=...) to override it"
    missing = re.search(r"Could not find '([^']+)'", message)
    if missing:
        path = missing.group(1)
        # The group is the override's key (experiment), the option may have folders (table2/x).
        groups = [k for k in map(_key_of, overrides) if path.startswith(f"{k}/")]
        group = max(groups, key=len) if groups else path.rpartition("/")[0]
        option = path[len(group) + 1:]
        # List the deepest folder of the path that exists (experiment/tabl2/x: experiment's).
        parts = option.split("/")[:-1]
        while parts and not (CONFIG_DIR / group / "/".join(parts)).is_dir():
            parts.pop()
        folder = "/".join(parts)
        options = _options(f"{group}/{folder}".rstrip("/"))
        wanted = option[len(folder) + 1:] if folder else option
        close = difflib.get_close_matches(wanted, options, n=3, cutoff=0.5)
        label, shown = ("closest", close) if close and len(options) > 8 else ("available", options)
        where = f"configs/{group}/{folder + '/' if folder else ''}"
        return f"{group}={option}: no such option in {where} ({label}: {', '.join(shown) or 'none'})"
    first_line = message.splitlines()[0] if message else type(err).__name__
    return f"config overrides {' '.join(overrides)!r}: {first_line}"


def _nearest_settings(key: str, overrides: Sequence[str]) -> str:
    """'did you mean a.b? ' from the settings beside `key` (or, where its parent is no setting
    either, from all); 'a has: ...' where nothing is close and the parent has few."""
    names = _setting_names([o for o in overrides if _key_of(o) != key])
    parent, _, leaf = key.rpartition(".")
    siblings = sorted(n.rpartition(".")[2] for n in names if n.rpartition(".")[0] == parent)
    if parent and parent in names:
        close = [f"{parent}.{n}" for n in difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6)]
    else:
        close = difflib.get_close_matches(key, sorted(names), n=3, cutoff=0.75)
    if close:
        return f"did you mean {' or '.join(close)}? "
    if parent and parent in names and not siblings:  # e.g. model.format, null in GPT-2's recipe
        return f"{parent} is one value here (e.g. null), not a group of settings: set it whole, {parent}={{key: value, ...}}; "
    if parent and parent in names and len(siblings) <= 10:
        return f"{parent} has {', '.join(siblings)}; "
    return ""


def _key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _setting_names(overrides: Sequence[str]) -> set[str]:
    """Every setting's dotted name in the config these overrides compose (or the default one)."""
    from hydra.errors import HydraException

    try:
        cfg = _compose(overrides)
    except HydraException:
        cfg = _compose([])
    return set(_dotted(cfg))


def _dotted(node: DictConfig, prefix: str = "") -> Iterator[str]:
    for key in node.keys():
        name = f"{prefix}{key}"
        yield name
        child = node._get_node(key)  # no interpolation resolved: ${shared:} needs no data here
        if isinstance(child, DictConfig):
            yield from _dotted(child, f"{name}.")


def _options(group: str) -> list[str]:
    """The options of a config group: its folder's yaml files and sub-folders, by name."""
    folder = CONFIG_DIR / group
    if not folder.is_dir():
        return []
    return sorted(
        p.stem if p.is_file() else f"{p.name}/..."
        for p in folder.iterdir()
        if (p.is_file() and p.suffix == ".yaml") or p.is_dir()
    )


def sweep_jobs(overrides: Sequence[str], most: int = 64) -> list[list[str]] | None:
    """Jobs of a sweep to compose and check before Hydra launches any: the first value of every
    sweep, then each other value of each sweep with the rest at their first (every value is
    tried, not every combination; at most `most` jobs). `hydra.*` overrides are left out (the
    launcher's own). One job without sweeps; None where a sweep cannot be expanded without
    Hydra's config loader (glob) or an override does not parse: Hydra then reports alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = [o for o in OverridesParser.create().parse_overrides(list(overrides))
                  if not o.key_or_group.startswith("hydra")]
        values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [None]
                  for o in parsed]
    except HydraException:
        return None

    def job(choice: dict[int, int]) -> list[str]:
        return [o.input_line if vals == [None]
                else f"{o.get_key_element()}={vals[choice.get(i, 0)]}"
                for i, (o, vals) in enumerate(zip(parsed, values, strict=True))]

    jobs = [job({})]
    for i, vals in enumerate(values):
        jobs += [job({i: k}) for k in range(1, len(vals))]
    return jobs[:most]
