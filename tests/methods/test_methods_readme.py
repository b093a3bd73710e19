"""The README's "Solo Connection on your own model" snippet runs as written (GPT-2 S shapes,
random weights standing in for the hub's `gpt2`) and prints what its comment says."""

from __future__ import annotations

import re

import torch
from transformers import AutoModelForCausalLM

from solo.models import build_random_model, random_config
from solo.paths import REPO_ROOT


def _snippet() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Solo Connection on your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_readme_snippet_runs_and_prints_its_comment(shared_data, tmp_path, monkeypatch, capsys):
    config = random_config(shared_data / "gpt2-configs" / "gpt2.json")
    built = []

    def from_pretrained(name, *args, **kwargs):
        assert name == "gpt2"
        torch.manual_seed(len(built))
        built.append(build_random_model(config).eval())
        return built[-1]

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.chdir(tmp_path)
    code = _snippet()
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102  (the documented snippet itself)

    printed = capsys.readouterr().out.strip()
    promised = re.search(r"print\(method\)\s+# (.*)", code)[1]
    head, tail = promised.split("...")
    assert printed.startswith(head) and printed.endswith(tail.strip()), (printed, promised)
    assert len(built) == 2 and built[0].training  # trained in train mode, as the snippet says
    assert (tmp_path / "my-adapter" / "adapter.safetensors").is_file()
    loaded = scope["method"]
    # Appendix B's count plus λ: the shared encoder and decoder keep round(0.4 * 768 * 128) = 39,322
    # entries each; each of the 5 connections has its encoding vector (128), v (768) and λ (1).
    assert loaded.model is built[1] and loaded.num_trainable() == 2 * round(0.4 * 768 * 128) + 5 * (128 + 768 + 1)
