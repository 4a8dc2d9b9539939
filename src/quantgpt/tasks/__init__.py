"""The paper's three tasks: data loading, batching and metrics (docs/method.md#tasks-and-training-settings).

language modelling (perplexity), Persona-Chat next-utterance prediction (hits@1 of 20),
XSum summarization (ROUGE-1/2/L). Models are ordinary Transformers models; quantization and
training call these functions.
"""

from quantgpt.tasks.errors import DataError
from quantgpt.tasks.language_modeling import (
    LM_CORPORA,
    LMBlockDataset,
    LMCorpus,
    collate_lm_blocks,
    evaluate_perplexity,
    load_lm_text,
    make_lm_dataloader,
    tokenize_to_blocks,
)
from quantgpt.tasks.personachat import (
    PERSONACHAT_SPECIAL_TOKENS,
    PersonaChatDataset,
    PersonaChatExample,
    add_personachat_special_tokens,
    build_double_head_inputs,
    collate_double_head,
    evaluate_hits_at_1,
    examples_from_convai_dialogues,
    load_parlai_fixture,
    load_personachat,
    load_personachat_jsonl,
    make_personachat_dataloader,
    sample_distractors,
)
from quantgpt.tasks.summarization import (
    generate_summaries,
    load_xsum,
    load_xsum_jsonl,
    make_summarization_collator,
    rouge_scores,
    tokenize_summarization,
)

__all__ = [
    "DataError",
    "LM_CORPORA",
    "LMBlockDataset",
    "LMCorpus",
    "collate_lm_blocks",
    "evaluate_perplexity",
    "load_lm_text",
    "make_lm_dataloader",
    "tokenize_to_blocks",
    "PERSONACHAT_SPECIAL_TOKENS",
    "PersonaChatDataset",
    "PersonaChatExample",
    "add_personachat_special_tokens",
    "build_double_head_inputs",
    "collate_double_head",
    "evaluate_hits_at_1",
    "examples_from_convai_dialogues",
    "load_parlai_fixture",
    "load_personachat",
    "load_personachat_jsonl",
    "make_personachat_dataloader",
    "sample_distractors",
    "generate_summaries",
    "load_xsum",
    "load_xsum_jsonl",
    "make_summarization_collator",
    "rouge_scores",
    "tokenize_summarization",
]
