"""The settings of the testbed: how the teacher is made (`TeacherRecipe`) and how each method is
quantized from it (`QATRecipe`). Both validate when built; the teacher's settings hash to the key
of its cache folder, so a changed recipe never reuses a stale teacher.

The values of `DEFAULT_TEACHER` and `DEFAULT_QAT` were chosen by measurement on two CPU cores
(see the README's "Results" section and docs/results/); the paper's own settings (for GPT-2 small
on a GPU cluster) are kept only where a docstring below says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from transformers import GPT2Config, LlamaConfig, OPTConfig, PretrainedConfig, Qwen2Config
from ..config import ConfigError

# Bumped when the way a teacher is made changes without a change of its settings.
RECIPE_FORMAT = 1
# Teacher shapes: GPT-2 (the paper's model), or a Llama-family / OPT decoder of the same size.
TEACHER_ARCHITECTURES = ("gpt2", "llama", "qwen2", "opt")


def _check(owner: str, name: str, value: Any, kind: type | tuple, low: float | None = None, allowed: str = "") -> None:
    is_kind = isinstance(value, kind) and not isinstance(value, bool)
    if not is_kind or (low is not None and value < low):
        raise ConfigError(f"{owner}.{name}={value!r} is not allowed: {allowed}")


@dataclass(frozen=True)
class TeacherRecipe:
    """How the full-precision teacher is trained from scratch (CPU testbed, SPEC section 7 adapted).

    Tokenizer: byte-level BPE of `vocab_size` tokens trained on the training text (the pretraining
    corpus, when used, and WikiText-2's testbed-train split). Model: `architecture` (GPT-2 by
    default; "llama", "qwen2" or "opt" for a decoder of that family) with `n_layer` layers of width
    `n_embd`, `n_head` heads, `block_size` positions (also the training block length); the Llama and
    Qwen2 shapes use half as many key/value heads (grouped-query attention) when `n_head` is even
    and a SwiGLU width of 8/3 `n_embd` rounded up to a multiple of 256 (OPT: 4 `n_embd`).
    Pretraining: `pretrain_steps` steps on ../shared/data/corpus/nltk-2008 (0: none). Fine-tuning:
    `finetune_steps` steps on testbed-train. Each stage keeps its best checkpoint on testbed-select
    (evaluated every `eval_every` steps); the learning rate warms up over `warmup_steps`, then
    decays linearly to 0. `max_blocks` caps the blocks of every training and evaluation split
    (tests and smoke runs only: it makes the perplexities partial).
    """

    vocab_size: int = 8192
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    block_size: int = 256
    dropout: float = 0.1
    batch_size: int = 8
    pretrain_steps: int = 0
    pretrain_learning_rate: float = 1e-3
    finetune_steps: int = 900
    finetune_learning_rate: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    eval_every: int = 100
    seed: int = 0
    max_blocks: int | None = None
    architecture: str = "gpt2"

    def __post_init__(self) -> None:
        owner = "TeacherRecipe"
        if self.architecture not in TEACHER_ARCHITECTURES:
            raise ConfigError(
                f"{owner}.architecture={self.architecture!r} is not allowed: use one of {', '.join(TEACHER_ARCHITECTURES)}"
            )
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "block_size", "batch_size", "finetune_steps", "eval_every"):
            _check(owner, name, getattr(self, name), int, 1, "use an integer >= 1")
        for name in ("pretrain_steps", "warmup_steps", "seed"):
            _check(owner, name, getattr(self, name), int, 0, "use an integer >= 0")
        _check(owner, "vocab_size", self.vocab_size, int, 258, "use an integer >= 258 (256 bytes, <|endoftext|>, a merge)")
        _check(owner, "block_size", self.block_size, int, 2, "use an integer >= 2")
        if self.n_embd % self.n_head:
            raise ConfigError(f"{owner}.n_head={self.n_head} is not allowed: it must divide n_embd={self.n_embd}")
        for name in ("pretrain_learning_rate", "finetune_learning_rate"):
            value = getattr(self, name)
            _check(owner, name, value, (int, float), None, "use a number > 0")
            if not value > 0:
                raise ConfigError(f"{owner}.{name}={value!r} is not allowed: use a number > 0")
        for name in ("dropout", "weight_decay"):
            value = getattr(self, name)
            _check(owner, name, value, (int, float), 0, "use a number >= 0 (dropout below 1)")
        if self.dropout >= 1:
            raise ConfigError(f"{owner}.dropout={self.dropout!r} is not allowed: use a number in [0, 1)")
        if self.max_blocks is not None:
            _check(owner, "max_blocks", self.max_blocks, int, 1, "use None or an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """12 hex digits of the SHA-256 of the settings (and RECIPE_FORMAT): the cache folder's name.
        A GPT-2 teacher leaves `architecture` out, so its key (and cached teacher) predates the field."""
        settings = self.to_dict()
        if settings["architecture"] == "gpt2":
            del settings["architecture"]
        text = json.dumps({"format": RECIPE_FORMAT, **settings}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def model_config(self) -> PretrainedConfig:
        """The teacher's configuration; <|endoftext|> (id 0) is its bos and eos token."""
        if self.architecture != "gpt2":
            return self._decoder_config()
        return GPT2Config(
            vocab_size=self.vocab_size,
            n_positions=self.block_size,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            bos_token_id=0,
            eos_token_id=0,
            architectures=["GPT2LMHeadModel"],
        )

    def _decoder_config(self) -> PretrainedConfig:
        """A Llama, Qwen2 or OPT decoder of the recipe's size (no residual dropout in these families)."""
        common = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.n_embd,
            num_hidden_layers=self.n_layer,
            num_attention_heads=self.n_head,
            max_position_embeddings=self.block_size,
            attention_dropout=self.dropout,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=None,
        )
        if self.architecture == "opt":
            return OPTConfig(
                **common, ffn_dim=4 * self.n_embd, word_embed_proj_dim=self.n_embd, dropout=self.dropout,
                architectures=["OPTForCausalLM"],
            )
        swiglu_width = 256 * math.ceil(8 * self.n_embd / 3 / 256)  # about GPT-2's MLP parameters, 256-aligned
        kv_heads = self.n_head // 2 if self.n_head % 2 == 0 else self.n_head
        config_class, name = (LlamaConfig, "LlamaForCausalLM") if self.architecture == "llama" else (Qwen2Config, "Qwen2ForCausalLM")
        return config_class(  # tied like the GPT-2 teacher, so the two compare at one embedding
            **common, intermediate_size=swiglu_width, num_key_value_heads=kv_heads, tie_word_embeddings=True,
            architectures=[name],
        )


@dataclass(frozen=True)
class QATRecipe:
    """How each method is trained from the teacher: `steps` optimizer steps of `batch_size` blocks of
    WikiText-2 testbed-train, the backbone learning rate (the paper's 5e-4), best checkpoint on
    testbed-select every `eval_every` steps, `num_negatives` negatives for QuantGPT's contrastive
    loss (the paper's 32 for WikiText-2).

    Quantizer learning rate: `quantizer_learning_rate` (the paper's 1e-3), except for the methods
    named in `method_quantizer_learning_rates` ({method: rate}). The paper's 1e-3 is for about 10k
    steps; in the testbed's 150, Adam moves QuantGPT's gamma (a scale near 1) by at most 0.15, while
    LSQ's step (about 0.01 in weight units) moves by 10% a step. Each method takes the better of
    1e-3 and 2e-2 on testbed-select at 2-2-8 (measured: docs/results/quantizer-lr.md), hence
    QuantGPT's 2e-2 below and the paper's 1e-3 for LSQ and PACT.

    contrastive_weight: QuantGPT's lambda (Eq. 5, the paper's 0.1); 0 trains QuantGPT with logit
    distillation alone, the ablation that tells what the contrastive loss adds on this testbed.
    """

    steps: int = 150
    batch_size: int = 4
    learning_rate: float = 5e-4
    quantizer_learning_rate: float = 1e-3
    method_quantizer_learning_rates: dict[str, float] = field(default_factory=lambda: {"quantgpt": 2e-2})
    warmup_steps: int = 0
    eval_every: int = 50
    num_negatives: int = 32
    contrastive_weight: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "QATRecipe"
        for name in ("steps", "batch_size", "eval_every", "num_negatives"):
            _check(owner, name, getattr(self, name), int, 1, "use an integer >= 1")
        for name in ("warmup_steps", "seed"):
            _check(owner, name, getattr(self, name), int, 0, "use an integer >= 0")
        for name in ("learning_rate", "quantizer_learning_rate"):
            value = getattr(self, name)
            _check(owner, name, value, (int, float), None, "use a number > 0")
            if not value > 0:
                raise ConfigError(f"{owner}.{name}={value!r} is not allowed: use a number > 0")
        _check(owner, "contrastive_weight", self.contrastive_weight, (int, float), 0, "use a number >= 0 (0 drops the contrastive loss)")
        rates = dict(self.method_quantizer_learning_rates)
        for method, value in rates.items():
            if not isinstance(method, str) or isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(
                    f"{owner}.method_quantizer_learning_rates[{method!r}]={value!r} is not allowed: use a method name and a number > 0"
                )
        object.__setattr__(self, "method_quantizer_learning_rates", rates)

    def quantizer_learning_rate_of(self, method: str) -> float:
        """The quantizer learning rate `method` trains with."""
        return float(self.method_quantizer_learning_rates.get(method, self.quantizer_learning_rate))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_TEACHER = TeacherRecipe()
DEFAULT_QAT = QATRecipe()
# A few seconds end to end: tests and smoke runs.
TINY_TEACHER = TeacherRecipe(
    vocab_size=300,
    n_layer=1,
    n_embd=16,
    n_head=2,
    block_size=32,
    batch_size=4,
    pretrain_steps=3,
    finetune_steps=4,
    warmup_steps=0,
    eval_every=2,
    max_blocks=16,
)
TINY_QAT = QATRecipe(steps=2, batch_size=4, eval_every=2, num_negatives=4)
RECIPES = {"default": (DEFAULT_TEACHER, DEFAULT_QAT), "tiny": (TINY_TEACHER, TINY_QAT)}
