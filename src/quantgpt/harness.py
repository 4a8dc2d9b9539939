"""lm-evaluation-harness on quantgpt models (the `eval` extra: `pip install 'quantgpt[eval]'`).

lm-eval's `hf` model loads `pretrained=RUN/best` with Transformers' `from_pretrained`, which gives
the fake-quantized model back once quantgpt is imported (`hf_quantizer.py`). The `lm_eval` command
itself never imports quantgpt (it then stops at "Unknown quantization type, got quantgpt"), so
`quantgpt-lm-eval ARGS` (or `python -m quantgpt.harness ARGS`) is `lm_eval ARGS` with quantgpt
imported first. `lm_eval_tasks` is the same from Python, through `lm_eval.simple_evaluate`.

`configs/lm-eval/` holds quantgpt's task files (`--include_path configs/lm-eval`):
`quantgpt_wikitext2` is WikiText-2 raw test read from ../shared/data, scored by article.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import hf_quantizer  # noqa: F401  (registers quant_method "quantgpt" before lm-eval loads a model)
from .errors import QuantgptError, UsageError
from .jsonio import dumps_json

# The task files shipped in the repository (not in the wheel: they read data beside a checkout).
TASKS_DIR = Path(__file__).resolve().parents[2] / "configs" / "lm-eval"


def _lm_eval():
    try:
        import lm_eval
    except ModuleNotFoundError:
        raise UsageError("lm-evaluation-harness is not installed: pip install 'quantgpt[eval]' (or lm-eval)") from None
    return lm_eval


def lm_eval_tasks(
    model_dir: str | Path,
    tasks: list[str],
    include_path: str | Path | None = None,
    limit: int | float | None = None,
    samples: dict[str, list[int]] | None = None,
    batch_size: int = 1,
    max_length: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """lm-eval's results for a saved model (`RUN/best`, quantized or not): `{"results": {task: {...}}, ...}`.

    include_path: folders of extra task files (default `configs/lm-eval` of this checkout, when there).
    limit / samples: evaluate the first `limit` documents, or the listed ones, of each task.
    max_length: lm-eval's window (default: the model's context length).
    """
    lm_eval = _lm_eval()
    from lm_eval.tasks import TaskManager

    if include_path is None and TASKS_DIR.is_dir():
        include_path = TASKS_DIR
    manager = TaskManager(include_path=None if include_path is None else str(include_path))
    unknown = [task for task in tasks if not manager.match_tasks([task])]
    if unknown:
        raise UsageError(f"lm-eval knows no task {', '.join(unknown)} (include path {include_path}); see lm_eval ls tasks")
    from lm_eval.models.huggingface import HFLM

    from .tokenization import load_decoder_tokenizer

    # quantgpt's own tokenizer (the saved tokenizer.json as saved, as training loaded it), not
    # AutoTokenizer's, which picks the class from config.json's model type and re-splits the text.
    tokenizer = load_decoder_tokenizer(model_dir)
    model_args: dict[str, Any] = {"dtype": "float32", "batch_size": batch_size, "device": device}
    if max_length is not None:
        model_args["max_length"] = max_length
    model = HFLM(pretrained=str(model_dir), tokenizer=tokenizer, **model_args)
    return lm_eval.simple_evaluate(
        model=model,
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        samples=samples,
        batch_size=batch_size,
        device=device,
        bootstrap_iters=0,
        log_samples=False,
    )


def print_lm_eval(model_dir: str | Path, tasks: list[str], limit: int | None, as_json: bool) -> int:
    """`quantgpt evaluate DIR --lm-eval TASK...`: lm-eval's table (or its results as one JSON object)."""
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise UsageError(f"--lm-eval-limit {limit}: allowed is an integer >= 1")
    results = lm_eval_tasks(model_dir, tasks, limit=limit)
    if as_json:
        print(dumps_json({"model": str(model_dir), "lm_eval": results["results"]}))
    else:
        from lm_eval.utils import make_table

        print(make_table(results))
    return 0


def main(argv: list[str] | None = None) -> None:
    """`lm_eval` with quantgpt registered: the same arguments, the same output."""
    try:
        _lm_eval()
    except QuantgptError as error:  # not installed: one line and status 2, as the quantgpt command
        print(f"quantgpt: error: {str(error).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()


if __name__ == "__main__":
    main()
