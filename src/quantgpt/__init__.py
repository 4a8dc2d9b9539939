"""quantgpt: quantization-aware training with token-level contrastive distillation (ACL 2022)."""

__version__ = "0.1.0"
