"""What the testbed needs of each task it runs: its teacher, the task a run trains on and is
tested with (one per test set), the metric and which way is better, the model class.

"lm": language modelling, the teacher fine-tuned on WikiText-2's testbed-train (teacher.py),
tested on WikiText-2 and PTB (perplexity). "personachat": next-utterance prediction, the
double-head teacher fine-tuned on Persona-Chat's testbed-train (dialogue.py), tested on
Persona-Chat test (hits@1 of 20).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import AutoModelForCausalLM, GPT2DoubleHeadsModel

from ..tasks.language_modeling import LM_CORPORA
from .dialogue import DIALOGUE_TASK, dialogue_task, get_dialogue_teacher
from .teacher import get_teacher, lm_task


@dataclass(frozen=True)
class TestbedTask:
    """One of the testbed's tasks. `make_task(tokenizer_dir, recipe, data_dir, test_set)` is the
    task whose "test" split is `test_set`'s (and whose training and selection splits are the
    testbed's); `get_teacher(recipe, cache_root, data_dir, progress, log, pretrained_root)` the
    teacher; `metric` the key of `api.evaluate`'s result shown as `metric_label`."""

    name: str
    test_sets: tuple[str, ...]
    allowed_test_sets: tuple[str, ...]
    metric: str
    metric_label: str
    higher_is_better: bool
    model_class: Any
    make_task: Callable[..., Any]
    get_teacher: Callable[..., Any]
    __test__ = False  # a name starting with "Test" that is not a pytest class


TESTBED_TASKS = {
    "lm": TestbedTask(
        "lm", ("wikitext-2", "ptb"), LM_CORPORA, "perplexity", "PPL", False, AutoModelForCausalLM,
        lm_task, get_teacher,
    ),
    DIALOGUE_TASK: TestbedTask(
        DIALOGUE_TASK, (DIALOGUE_TASK,), (DIALOGUE_TASK,), "accuracy", "hits@1 (%)", True, GPT2DoubleHeadsModel,
        dialogue_task, get_dialogue_teacher,
    ),
}
