"""The settings of the testbed: how the teacher is made (`TeacherRecipe`) and how each method is
quantized from it (`QATRecipe`). Both validate when built; the teacher's settings hash to the key
of its cache folder, so a changed recipe never reuses a stale teacher, and all of them but the
fine-tuning ones hash to the key of its pretrained checkpoint (`pretrain_key`), which a change of
the fine-tuning settings alone therefore reuses.

The values of `DEFAULT_TEACHER` and `DEFAULT_QAT` were chosen by measurement on two CPU cores
(see the README's "Results" section and docs/results/); the paper's own settings (for GPT-2 small
on a GPU cluster) are kept only where a docstring below says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from transformers import BartConfig, GPT2Config, LlamaConfig, OPTConfig, PretrainedConfig, Qwen2Config

from ..errors import ConfigError
from ..settings import setting, validate
from ..validators import integer, number, one_of, optional, rates

# Bumped when the way a teacher is made changes without a change of its settings.
RECIPE_FORMAT = 1
# A teacher with pretraining is now fine-tuned from the float16 pretrained checkpoint
# (testbed/pretrained.py), not from the float32 one, which changes its weights: its key says format 2.
# A teacher without pretraining is made as before and keeps its format-1 key (and cached folder).
PRETRAINED_TEACHER_FORMAT = 2
# Bumped when the way a pretrained checkpoint is made changes without a change of its settings.
PRETRAIN_FORMAT = 1
# The settings of the fine-tuning stage alone: the pretrained checkpoint does not depend on them.
FINETUNE_FIELDS = ("finetune_steps", "finetune_learning_rate")
# Teacher shapes: GPT-2 (the paper's model), or a Llama-family / OPT decoder of the same size.
TEACHER_ARCHITECTURES = ("gpt2", "llama", "qwen2", "opt")


def parse_rates(text: str) -> dict[str, float]:
    """"quantgpt=0.02,lsq=0.001" -> {"quantgpt": 0.02, "lsq": 0.001} ("" -> {}): the flag's text."""
    parsed = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            parsed[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: write METHOD=RATE, e.g. quantgpt=0.02") from None
    return parsed


def _digest(format: int, settings: dict[str, Any]) -> str:
    """12 hex digits of the SHA-256 of `settings` and `format`; a GPT-2 shape leaves `architecture` out."""
    if settings.get("architecture") == "gpt2":
        settings = {name: value for name, value in settings.items() if name != "architecture"}
    text = json.dumps({"format": format, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class _StagedRecipe:
    """What the testbed's two teacher recipes (`TeacherRecipe`, `BartRecipe`) share: validation,
    the n_head check, the settings as a dict and the pretraining stage's share of them (all but
    `finetune_fields`)."""

    finetune_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        validate(self)
        if self.n_embd % self.n_head:
            raise ConfigError(f"{type(self).__name__}.n_head={self.n_head} is not allowed: it must divide n_embd={self.n_embd}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def pretrain_settings(self) -> dict[str, Any]:
        """The settings the pretrained checkpoint depends on: all but the fine-tuning ones."""
        return {name: value for name, value in self.to_dict().items() if name not in self.finetune_fields}


@dataclass(frozen=True)
class TeacherRecipe(_StagedRecipe):
    """How the full-precision teacher is trained from scratch (CPU testbed; docs/method.md#tasks-and-training-settings).

    Tokenizer: byte-level BPE of `vocab_size` tokens trained on the training text (the pretraining
    corpus, when used, and WikiText-2's testbed-train split). Model: `architecture` (GPT-2 by
    default; "llama", "qwen2" or "opt" for a decoder of that family) with `n_layer` layers of width
    `n_embd`, `n_head` heads, `block_size` positions (also the training block length); the Llama and
    Qwen2 shapes use half as many key/value heads (grouped-query attention) when `n_head` is even
    and a SwiGLU width of 8/3 `n_embd` rounded up to a multiple of 256 (OPT: 4 `n_embd`).
    Pretraining: `pretrain_steps` steps on ../shared/data/corpus/nltk-2008 (0: none), kept as a
    float16 checkpoint of its own (`pretrain_key`, testbed/pretrained.py). Fine-tuning:
    `finetune_steps` steps on testbed-train, from that checkpoint (in float32) when there is one.
    Each stage keeps its best checkpoint on testbed-select (evaluated every `eval_every` steps);
    the learning rate warms up over `warmup_steps`, then decays linearly to 0. `max_blocks` caps the blocks of every training and evaluation split
    (tests and smoke runs only: it makes the perplexities partial).
    """

    # The fields (names, order, types, defaults) are hashed into the key of the cached teacher: never change them.
    vocab_size: int = setting(8192, integer(258), "BPE vocabulary (>= 258: 256 bytes, <|endoftext|>, a merge)")
    n_layer: int = setting(4, integer(1), "layers")
    n_embd: int = setting(256, integer(1), "width")
    n_head: int = setting(4, integer(1), "attention heads (must divide --n-embd)")
    block_size: int = setting(256, integer(2), "positions and training block length")
    dropout: float = setting(0.1, number(0, below=1), "dropout")
    batch_size: int = setting(8, integer(1), "blocks per step")
    pretrain_steps: int = setting(4500, integer(0), "pretraining steps on the general-English corpus (0: none)")
    pretrain_learning_rate: float = setting(1e-3, number(above=0), "pretraining learning rate")
    finetune_steps: int = setting(400, integer(1), "fine-tuning steps on testbed-train")
    finetune_learning_rate: float = setting(3e-4, number(above=0), "fine-tuning learning rate")
    warmup_steps: int = setting(50, integer(0), "warm-up steps of each stage")
    weight_decay: float = setting(0.01, number(0), "AdamW weight decay")
    eval_every: int = setting(100, integer(1), "evaluate on testbed-select every N steps")
    seed: int = setting(0, integer(0), "random seed")
    max_blocks: int | None = setting(None, optional(integer(1)), "cap the blocks of every split (tests and smoke runs)")
    architecture: str = setting("gpt2", one_of(TEACHER_ARCHITECTURES), "teacher shape")

    finetune_fields = FINETUNE_FIELDS

    def key(self) -> str:
        """12 hex digits of the SHA-256 of the settings (and the format): the cache folder's name.
        A GPT-2 teacher leaves `architecture` out, so its key (and cached teacher) predates the field."""
        return _digest(PRETRAINED_TEACHER_FORMAT if self.pretrain_steps else RECIPE_FORMAT, self.to_dict())

    def pretrain_key(self) -> str:
        """12 hex digits of the SHA-256 of `pretrain_settings` (and PRETRAIN_FORMAT): the name of
        the pretrained checkpoint's folder, shared by recipes that differ in fine-tuning only."""
        return _digest(PRETRAIN_FORMAT, self.pretrain_settings())

    def model_config(self) -> PretrainedConfig:
        """The teacher's configuration; <|endoftext|> (id 0) is its bos and eos token."""
        if self.architecture != "gpt2":
            return self._decoder_config()
        return GPT2Config(
            vocab_size=self.vocab_size, n_positions=self.block_size, n_embd=self.n_embd, n_layer=self.n_layer,
            n_head=self.n_head, resid_pdrop=self.dropout, embd_pdrop=self.dropout, attn_pdrop=self.dropout,
            bos_token_id=0, eos_token_id=0, architectures=["GPT2LMHeadModel"],
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
    1e-3 and 2e-2 on testbed-select at 2-2-8 (measured on the teacher trained from scratch:
    docs/results/scratch-teacher/quantizer-lr.md), hence QuantGPT's 2e-2 below and the paper's
    1e-3 for LSQ and PACT.

    contrastive_weight: QuantGPT's lambda (Eq. 5, the paper's 0.1); 0 trains QuantGPT with logit
    distillation alone, the ablation that tells what the contrastive loss adds on this testbed.
    """

    steps: int = setting(150, integer(1), "optimizer steps")
    batch_size: int = setting(4, integer(1), "blocks per step")
    learning_rate: float = setting(5e-4, number(above=0), "backbone learning rate")
    quantizer_learning_rate: float = setting(1e-3, number(above=0), "quantizer learning rate (methods not in the next flag)")
    method_quantizer_learning_rates: dict[str, float] = setting(
        factory=lambda: {"quantgpt": 2e-2}, check=rates(), parse=parse_rates,
        help="quantizer learning rate per method, METHOD=RATE,... (\"\" for none)",
    )
    warmup_steps: int = setting(0, integer(0), "warm-up steps")
    eval_every: int = setting(50, integer(1), "evaluate on testbed-select every N steps")
    num_negatives: int = setting(32, integer(1), "negatives of QuantGPT's contrastive loss")
    contrastive_weight: float = setting(0.1, number(0), "QuantGPT's lambda (0 drops the contrastive loss)")
    seed: int = setting(0, integer(0), "random seed")

    def __post_init__(self) -> None:
        validate(self)

    def quantizer_learning_rate_of(self, method: str) -> float:
        """The quantizer learning rate `method` trains with."""
        return float(self.method_quantizer_learning_rates.get(method, self.quantizer_learning_rate))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Bumped when the way the summarization testbed's BART (or its pretrained checkpoint) is made
# changes without a change of its settings.
BART_FORMAT = 1
BART_PRETRAIN_FORMAT = 1
# The settings of the BART's fine-tuning stage alone: its pretrained checkpoint does not depend on them.
BART_FINETUNE_FIELDS = ("finetune_steps", "finetune_learning_rate", "target_length")


@dataclass(frozen=True)
class BartRecipe(_StagedRecipe):
    """How the summarization testbed's full-precision BART is made (XSum, the paper's QuantBART task).

    Tokenizer: byte-level BPE of `vocab_size` tokens with BART's special tokens, trained on the
    pretraining corpus and XSum's testbed-train pairs. Model: BART with `n_layer` encoder and
    `n_layer` decoder layers of width `n_embd` (`n_head` heads, feed-forward 4 x `n_embd`), tied
    embeddings, `block_size` positions. Pretraining: `pretrain_steps` steps of BART's denoising
    objective (testbed/denoising.py: sentence permutation, then text infilling of `mask_ratio` of the
    tokens in spans of Poisson(`poisson_lambda`) length, a `random_ratio` of them replaced by a random
    token instead of <mask>) on blocks of `block_size` tokens of ../shared/data/corpus/nltk-2008,
    selected by the reconstruction perplexity of held-out blocks. Fine-tuning: `finetune_steps` steps on
    XSum testbed-train (articles cut to `block_size` tokens, summaries to `target_length`), selected
    by ROUGE-2 on testbed-select. The other fields are as `TeacherRecipe`'s.
    """

    # The fields are hashed into the keys of the cached checkpoints: never change them.
    vocab_size: int = setting(8192, integer(262), "BPE vocabulary (>= 262: 256 bytes, 5 special tokens, a merge)")
    n_layer: int = setting(3, integer(1), "layers of the encoder and of the decoder")
    n_embd: int = setting(256, integer(1), "width")
    n_head: int = setting(4, integer(1), "attention heads (must divide --n-embd)")
    block_size: int = setting(256, integer(8), "positions: pretraining block length and article tokens")
    target_length: int = setting(64, integer(2), "summary tokens for fine-tuning")
    dropout: float = setting(0.1, number(0, below=1), "dropout")
    batch_size: int = setting(8, integer(1), "blocks or article/summary pairs per step")
    pretrain_steps: int = setting(1500, integer(1), "denoising pretraining steps on the general-English corpus")
    pretrain_learning_rate: float = setting(1e-3, number(above=0), "pretraining learning rate")
    mask_ratio: float = setting(0.3, number(0, below=1), "share of the tokens text infilling masks (BART: 0.3)")
    poisson_lambda: float = setting(3.5, number(above=0), "mean masked span length (BART: 3.5)")
    random_ratio: float = setting(0.1, number(0, 1), "share of the masked spans given a random token instead of <mask> (BART: 0.1)")
    finetune_steps: int = setting(600, integer(1), "fine-tuning steps on XSum testbed-train")
    finetune_learning_rate: float = setting(3e-4, number(above=0), "fine-tuning learning rate")
    warmup_steps: int = setting(50, integer(0), "warm-up steps of each stage")
    weight_decay: float = setting(0.01, number(0), "AdamW weight decay")
    eval_every: int = setting(250, integer(1), "evaluate on testbed-select every N steps")
    seed: int = setting(0, integer(0), "random seed")
    max_blocks: int | None = setting(None, optional(integer(1)), "cap the blocks and pairs of every split (tests and smoke runs)")

    finetune_fields = BART_FINETUNE_FIELDS

    def key(self) -> str:
        """12 hex digits naming the fine-tuned BART: all its settings."""
        return _digest(BART_FORMAT, {"model": "bart", **self.to_dict()})

    def pretrain_key(self) -> str:
        """12 hex digits naming the pretrained checkpoint (never a GPT teacher's: "model" is hashed in)."""
        return _digest(BART_PRETRAIN_FORMAT, {"model": "bart", **self.pretrain_settings()})

    def model_config(self, tokenizer: Any) -> BartConfig:
        """The model's configuration, its special token ids those of `tokenizer` (train_bart_tokenizer's)."""
        ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
        return BartConfig(
            vocab_size=len(tokenizer), d_model=self.n_embd, encoder_layers=self.n_layer, decoder_layers=self.n_layer,
            encoder_attention_heads=self.n_head, decoder_attention_heads=self.n_head,
            encoder_ffn_dim=4 * self.n_embd, decoder_ffn_dim=4 * self.n_embd, max_position_embeddings=self.block_size,
            dropout=self.dropout, attention_dropout=self.dropout, **ids,
            decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id,
            architectures=["BartForConditionalGeneration"],
        )


DEFAULT_TEACHER = TeacherRecipe()
# The teacher of the testbed before it was pretrained (docs/results/scratch-teacher/): trained from
# nothing on testbed-train alone, 900 steps at 1e-3.
SCRATCH_TEACHER = TeacherRecipe(pretrain_steps=0, finetune_steps=900, finetune_learning_rate=1e-3)
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
RECIPES = {"default": (DEFAULT_TEACHER, DEFAULT_QAT), "scratch": (SCRATCH_TEACHER, DEFAULT_QAT), "tiny": (TINY_TEACHER, TINY_QAT)}
DEFAULT_BART = BartRecipe()
# QAT on XSum: 150 steps of 8 pairs (about 1.4 passes over testbed-train), selected once at the end
# (ROUGE by beam search on testbed-select costs about as much as 50 steps).
XSUM_QAT = QATRecipe(steps=150, batch_size=8, eval_every=150)
TINY_BART = BartRecipe(
    vocab_size=300, n_layer=1, n_embd=16, n_head=2, block_size=32, target_length=16, batch_size=4,
    pretrain_steps=3, finetune_steps=4, warmup_steps=0, eval_every=2, max_blocks=8,
)
BART_RECIPES = {"default": (DEFAULT_BART, XSUM_QAT), "tiny": (TINY_BART, TINY_QAT)}
