"""Solo Connection: parameter-efficient fine-tuning for transformers."""

__version__ = "0.1.0"
