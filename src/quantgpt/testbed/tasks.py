"""What the testbed needs of each task it runs: its teacher, the task a run trains on and is
tested with (one per test set), the metric and which way is better, the model class.

"lm": language modelling, the teacher fine-tuned on WikiText-2's testbed-train (teacher.py),
tested on WikiText-2 and PTB (perplexity). "personachat": next-utterance prediction, the
double-head teacher fine-tuned on Persona-Chat's testbed-train (dialogue.py), tested on
Persona-Chat test (hits@1 of 20). "xsum": summarization, a small BART pretrained by denoising and
fine-tuned on XSum's testbed-train (summaries.py), tested on testbed-test (ROUGE-1/2/L).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import AutoModelForCausalLM, BartForConditionalGeneration, GPT2DoubleHeadsModel

from ..tasks.language_modeling import LM_CORPORA
from ..tasks.summarization import ROUGE_TYPES
from .dialogue import DIALOGUE_TASK, dialogue_task, get_dialogue_teacher
from .recipe import BartRecipe, TeacherRecipe
from .summaries import SUMMARY_TASK, SUMMARY_TEST_SPLIT, get_summary_teacher, summary_task
from .teacher import get_teacher, lm_task


@dataclass(frozen=True)
class TestbedTask:
    """One of the testbed's tasks. `make_task(tokenizer_dir, recipe, data_dir, test_set)` is the
    task whose "test" split is `test_set`'s (and whose training and selection splits are the
    testbed's); `get_teacher(recipe, cache_root, data_dir, progress, log, pretrained_root)` the
    teacher; `metric` the key of `api.evaluate`'s result shown as `metric_label` (and the one
    model selection reads); `metrics`, when given, the keys reported as the table's columns
    (one test set: ROUGE-1/2/L), else each test set's `metric` is a column; `test_split` the split
    reported; `recipe_class` the teacher recipe the task takes."""

    name: str
    test_sets: tuple[str, ...]
    allowed_test_sets: tuple[str, ...]
    metric: str
    metric_label: str
    higher_is_better: bool
    score_name: str
    model_class: Any
    make_task: Callable[..., Any]
    get_teacher: Callable[..., Any]
    metrics: tuple[str, ...] = ()
    test_split: str = "test"
    recipe_class: type = TeacherRecipe
    __test__ = False  # a name starting with "Test" that is not a pytest class

    def columns(self, test_sets: tuple[str, ...]) -> tuple[str, ...]:
        """The table's score columns: the metrics when the task names several, else the test sets."""
        return self.metrics or test_sets

    def scores(self, test_set: str, evaluation: dict[str, Any]) -> dict[str, float]:
        """The columns an evaluation of `test_set` fills."""
        return {name: evaluation[name] for name in self.metrics} if self.metrics else {test_set: evaluation[self.metric]}


TESTBED_TASKS = {
    "lm": TestbedTask(
        "lm", ("wikitext-2", "ptb"), LM_CORPORA, "perplexity", "PPL", False, "perplexity", AutoModelForCausalLM,
        lm_task, get_teacher,
    ),
    DIALOGUE_TASK: TestbedTask(
        DIALOGUE_TASK, (DIALOGUE_TASK,), (DIALOGUE_TASK,), "accuracy", "hits@1 (%)", True, "hits@1", GPT2DoubleHeadsModel,
        dialogue_task, get_dialogue_teacher,
    ),
    SUMMARY_TASK: TestbedTask(
        SUMMARY_TASK, (SUMMARY_TASK,), (SUMMARY_TASK,), "rouge2", "F1", True, "ROUGE F1", BartForConditionalGeneration,
        summary_task, get_summary_teacher, metrics=ROUGE_TYPES, test_split=SUMMARY_TEST_SPLIT, recipe_class=BartRecipe,
    ),
}
