"""E2E data: readers for both formats, the `lora`/`official` setups, GPT-2 encoding, batching.

Typical use (trainer):
    pairs = load_split(cfg.data, "train")
    examples = encode_pairs(tokenizer, pairs, cfg.data.max_length)
    batches = TrainBatches(examples, batch_size, seed, pad_id=tokenizer.eos_token_id)
and for scoring: `group_by_mr(load_split(cfg.data, "test"))`, one prompt per group.
"""

from solo.data.batching import TrainBatches
from solo.data.download import DownloadError
from solo.data.readers import read_lora_txt, read_official_csv
from solo.data.records import E2EPair, MRGroup, group_by_mr
from solo.data.setups import SETUPS, get_setup, load_split, setup_description, train_source
from solo.data.tokenization import (
    PromptFormat,
    attach_format,
    encode_example,
    encode_pairs,
    encode_prompt,
    end_token_id,
    format_of,
)

__all__ = [
    "SETUPS",
    "DownloadError",
    "E2EPair",
    "MRGroup",
    "PromptFormat",
    "TrainBatches",
    "attach_format",
    "encode_example",
    "encode_pairs",
    "encode_prompt",
    "end_token_id",
    "format_of",
    "get_setup",
    "group_by_mr",
    "load_split",
    "read_lora_txt",
    "read_official_csv",
    "setup_description",
    "train_source",
]
