"""Backbone loading: hub name, local folder, or random weights from an architecture config."""

from solo.models.backbone import build_random_model, load_backbone, load_tokenizer, random_config

__all__ = ["build_random_model", "load_backbone", "load_tokenizer", "random_config"]
