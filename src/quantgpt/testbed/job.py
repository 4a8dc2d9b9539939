"""The testbed's job: get the teacher of its task (tasks.py: language modelling or Persona-Chat),
quantize it with each method (or variant, variants.py) at each bit width and QAT seed, evaluate on
the test sets, write Table 1 (means and standard deviations over seeds, which row beats which by
two standard errors, the paper's claims checked) and the figures (language modelling).
`quantgpt run` (the main job at 2-2-8) and `benchmarks/table1.py` (the whole grid, a peer library,
step times) both run this.

Everything trains through the one training loop (`quantgpt.api`, `quantgpt.training.train`);
this module only decides what runs, in which order, and collects the numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import AutoConfig

from .. import api
from ..config import BitWidths, QuantConfig
from ..distill import ContrastiveConfig
from ..quantizers import display_name
from ..report import FULL_PRECISION, ResultRow, table1_markdown, write_report, write_table1
from ..report.significance import Spread
from ..errors import InputFileError
from ..jsonio import dumps_json
from ..model_files import read_json_object
from ..schemas import testbed_result_from_saved
from ..size import model_size
from ..training.checkpoints import write_json_atomic
from ..training import ObjectiveConfig, TrainingConfig
from .comparisons import claim_verdicts, comparisons_markdown, grouped
from .measure import measure, seconds_per_step
from .peers import PEERS, TORCHAO_REQUIREMENT, torchao_available
from .recipe import DEFAULT_QAT, DEFAULT_TEACHER, BartRecipe, QATRecipe, TeacherRecipe
from .dialogue import eval_examples
from .summaries import summary_protocol
from .tasks import TESTBED_TASKS, TestbedTask
from .teacher import SELECT_SPLIT, Teacher, teacher_evaluation
from .variants import Variant, variant, variant_names
from ..config import ConfigError
from ..settings import SettingError, setting, validate
from ..validators import instance_of, integer, one_of, some_of, strings

Log = Callable[[str], None]
PAPER_METHODS = ("quantgpt", "pact", "lsq", "laq")
# The main job's rows: quantization without training, the paper's four methods, PACT at its best.
DEFAULT_METHODS = ("rtn-untrained", "quantgpt-untrained", "quantgpt", "pact", "pact-weights", "lsq", "laq")
TEST_SETS = TESTBED_TASKS["lm"].test_sets
REFERENCE = "fp-distill"
# A finished run's result, kept in its run directory so that a rerun with the same settings reuses it.
RESULT_FILE = "testbed_result.json"
RESULT_FORMAT = 2


@dataclass(frozen=True)
class TestbedJob:
    """What to run: `methods` (registered methods or variants, variants.py) x `bits` quantized from
    the teacher of `teacher` for `task` (tasks.py), each trained by `qat` with `seeds` QAT seeds
    (the recipe's seed and the next ones; an untrained variant runs once), evaluated on the test
    split of each of `test_sets` (empty: the task's); `peers` adds other libraries' quantizers
    (see peers.py) at the same bit widths; `reference_steps` > 0 also runs that many steps of plain full-precision logit distillation, the
    reference of the step-time ratios."""

    teacher: TeacherRecipe | BartRecipe = setting(DEFAULT_TEACHER, instance_of((TeacherRecipe, BartRecipe)), cli=False)
    qat: QATRecipe = setting(DEFAULT_QAT, instance_of(QATRecipe), cli=False)
    methods: tuple[str, ...] = setting(DEFAULT_METHODS, some_of(variant_names), "methods: registered weight quantizers or variants")
    bits: tuple[str, ...] = setting(("2-2-8",), strings(), "W-E-A bit widths")
    task: str = setting("lm", one_of(tuple(TESTBED_TASKS)), "testbed task: lm (WikiText-2, PTB), personachat (hits@1) or xsum (ROUGE)")
    test_sets: tuple[str, ...] = setting((), strings(), "test sets (default: the task's; lm: wikitext-2 ptb)")
    peers: tuple[str, ...] = setting((), some_of(PEERS), "other libraries' quantizers")
    reference_steps: int = setting(0, integer(0), "steps of full-precision distillation timed as reference")
    seeds: int = setting(1, integer(1), "QAT seeds of each trained method: the QAT recipe's seed and the next ones")
    __test__ = False  # a name starting with "Test" that is not a pytest class

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "bits", tuple(str(BitWidths.parse(b)) for b in self.bits))
        if not self.bits:
            raise SettingError("TestbedJob", "bits", self.bits, "one or more W-E-A bit widths, e.g. 2-2-8")
        for name in ("methods", "bits", "test_sets", "peers"):  # a repeat would run twice and count as two seeds
            values = getattr(self, name)
            repeated = next((value for i, value in enumerate(values) if value in values[:i]), None)
            if repeated is not None:
                raise SettingError("TestbedJob", name, values, f"a list without repeats ({repeated} is named twice)")
        allowed = self.testbed_task.allowed_test_sets
        recipe_class = self.testbed_task.recipe_class
        if not isinstance(self.teacher, recipe_class):
            hint = " (XSum's BART recipes: python benchmarks/table3.py)" if recipe_class is BartRecipe else ""
            raise ConfigError(f"TestbedJob.teacher: task {self.task!r} takes a {recipe_class.__name__}, not a {type(self.teacher).__name__}{hint}")
        object.__setattr__(self, "test_sets", self.test_sets or self.testbed_task.test_sets)
        unknown = [name for name in self.test_sets if name not in allowed]
        if unknown:
            raise ConfigError(
                f"TestbedJob.test_sets: {', '.join(map(repr, unknown))} is not a test set of task {self.task!r}; "
                f"allowed: {', '.join(allowed)}"
            )
        if "torchao" in self.peers and not torchao_available():
            raise ConfigError(f"TestbedJob.peers: 'torchao' is not installed: pip install {TORCHAO_REQUIREMENT}")
        if not self.methods and not self.peers:
            raise ConfigError("TestbedJob.methods: name at least one method or peer")

    @property
    def testbed_task(self) -> TestbedTask:
        return TESTBED_TASKS[self.task]

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's score columns: the test sets, or the task's metrics (XSum: ROUGE-1/2/L)."""
        return self.testbed_task.columns(self.test_sets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "teacher": self.teacher.to_dict(),
            "qat": self.qat.to_dict(),
            "methods": list(self.methods),
            "bits": list(self.bits),
            "test_sets": list(self.test_sets),
            "peers": list(self.peers),
            "reference_steps": self.reference_steps,
            "seeds": self.seeds,
        }

    def entries(self) -> list[tuple[str, str, int | None]]:
        """(variant, bits, QAT seed) in the order they run; an untrained variant has seed None."""
        seeds = [self.qat.seed + i for i in range(self.seeds)]
        entries = []
        for name in (*self.methods, *self.peers):
            for bits in self.bits:
                entries += [(name, bits, None)] if not variant(name).trained else [(name, bits, s) for s in seeds]
        return entries


@dataclass
class MethodResult:
    """One quantized model: its variant, QAT seed (None untrained), run directory (None untrained),
    the task's metric on the selection split and on each test set, costs."""

    method: str
    bits: str
    run_dir: Path | None
    select_score: float
    scores: dict[str, float]
    wall_seconds: float
    peak_rss_mib: float
    seconds_per_step: float | None
    seed: int | None = None


@dataclass
class TestbedResult:
    """What `run_testbed` did: the teacher and its test scores, one result per quantized model,
    the step-time reference (when run), the table's path, the figures by bit width."""

    __test__ = False
    teacher: Teacher
    teacher_scores: dict[str, float]
    results: list[MethodResult]
    reference: MethodResult | None
    table: Path
    figures: dict[str, dict[str, Path]] = field(default_factory=dict)
    wall_seconds: float = 0.0


def _training_config(qat: QATRecipe, method: str, run_dir: Path, steps: int, progress: bool) -> TrainingConfig:
    return TrainingConfig(
        output_dir=str(run_dir),
        learning_rate=qat.learning_rate,
        quantizer_learning_rate=qat.quantizer_learning_rate_of(method),
        warmup_steps=qat.warmup_steps,
        batch_size=qat.batch_size,
        max_steps=steps,
        eval_every=qat.eval_every,
        save_every=0,
        keep_checkpoints=1,
        log_every=max(1, min(10, steps // 5)),
        eval_split=SELECT_SPLIT,
        seed=qat.seed,
        progress=progress,
    )


def _fresh(run_dir: Path) -> Path:
    """The job owns its run directories: a previous job's run of the same name is replaced."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return run_dir


def _objective(method: str, qat: QATRecipe, use_contrastive: bool | None = None) -> ObjectiveConfig:
    """The paper's objective for `method` (`ObjectiveConfig.for_method` decides), with the recipe's
    settings of QuantGPT's contrastive loss (its weight 0 is the ablation without it)."""
    contrastive = ContrastiveConfig(num_negatives=qat.num_negatives, lam=qat.contrastive_weight)
    return ObjectiveConfig.for_method(method, contrastive, use_contrastive)


def _quantgpt_objective_text(qat: QATRecipe) -> str:
    if qat.contrastive_weight == 0:
        return "QuantGPT: logit distillation only (contrastive weight 0, an ablation)"
    return f"QuantGPT: logit distillation + {qat.contrastive_weight:g} x token contrastive loss ({qat.num_negatives} negatives)"


def _task(job: TestbedJob, teacher: Teacher, data_dir: str | Path, test_set: str | None = None):
    """The task a run trains on (and is selected with), or the one of `test_set`."""
    testbed_task = job.testbed_task
    return testbed_task.make_task(teacher.tokenizer_dir, job.teacher, data_dir, test_set or testbed_task.test_sets[0])


def _test_scores(job: TestbedJob, teacher: Teacher, data_dir: str | Path, evaluate: Callable[[Any, str], dict]) -> dict[str, float]:
    """The table's columns from `evaluate(task, test_set)` on each test set's task."""
    scores: dict[str, float] = {}
    for name in job.test_sets:
        scores.update(job.testbed_task.scores(name, evaluate(_task(job, teacher, data_dir, name), name)))
    return scores


def _tokens_per_step(job: TestbedJob) -> int | None:
    """Tokens of a language-modelling step (its blocks are full); None for Persona-Chat, whose
    sequences vary, so its rows have no step time."""
    return job.qat.batch_size * job.teacher.block_size if job.task == "lm" else None


def _method_result(job: TestbedJob, method: str, bits: str, run_dir: Path, measured, scores: dict, seed=None) -> MethodResult:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    tokens_per_step = _tokens_per_step(job)
    return MethodResult(
        method=method,
        bits=bits,
        run_dir=run_dir,
        select_score=measured.value.best[job.testbed_task.metric],
        scores=scores,
        wall_seconds=round(measured.wall_seconds, 1),
        peak_rss_mib=round(measured.peak_rss_mib, 1),
        seconds_per_step=None if tokens_per_step is None else seconds_per_step(records, tokens_per_step),
        seed=seed,
    )


def _quantization(chosen: Variant, bits: str) -> QuantConfig:
    return QuantConfig(method=chosen.method, bits=bits, **chosen.quantization)


def _run_settings(job: TestbedJob, teacher: Teacher, name: str, bits: str, qat: QATRecipe | None) -> dict[str, Any]:
    """Everything a finished run's result depends on: equal settings, equal result (`qat` None: untrained)."""
    return {
        "task": job.task, "variant": name, "bits": bits, "teacher": teacher.summary["key"],
        "qat": None if qat is None else qat.to_dict(),
        "test_sets": list(job.test_sets),
        "quantization": _quantization(variant(name), bits).to_dict(), "format": RESULT_FORMAT,
    }


def _reused(run_dir: Path, settings: dict[str, Any], log: Log) -> MethodResult | None:
    """The result of a finished run with the same settings (a rerun or a resumed grid skips it).
    A result file that fails its schema (`schemas.testbed_result_from_saved`) is a run to redo,
    said in one line."""
    file = run_dir / RESULT_FILE
    if not file.exists():
        return None
    try:
        saved_settings, saved = testbed_result_from_saved(read_json_object(file), file)
        if (saved["method"], saved["bits"]) != (settings["variant"], settings["bits"]):
            raise InputFileError(f"{file}: result of {saved['method']} {saved['bits']}, not of this run")
    except InputFileError as error:
        log(f"{error}; running it again")
        return None
    if saved_settings != json.loads(dumps_json(settings)):
        return None
    return MethodResult(**saved, run_dir=run_dir)


def _save_result(run_dir: Path, settings: dict[str, Any], result: MethodResult) -> None:
    """The file `_reused` reads back: the run's settings and its result (without its folder)."""
    saved = {k: v for k, v in dataclasses.asdict(result).items() if k != "run_dir"}
    write_json_atomic(run_dir / RESULT_FILE, {"settings": settings, "result": saved})


def quantize_with_method(job, teacher, name, bits, seed, run_dir, data_dir, progress, log: Log = print) -> MethodResult:
    """QAT of one variant (a registered method, the paper's or a peer library's, or a variant of
    one) with QAT seed `seed`, through `api.quantize` (prepare + distill), then its best model on
    the test sets. A run directory that already holds the finished result of the same settings
    is reused; any other is replaced."""
    chosen = variant(name)
    qat = dataclasses.replace(job.qat, seed=seed)
    settings = _run_settings(job, teacher, name, bits, qat)
    reused = _reused(run_dir, settings, log)
    if reused is not None:
        return reused
    task = _task(job, teacher, data_dir)
    config = _training_config(qat, chosen.method, _fresh(run_dir), qat.steps, progress)
    objective = _objective(chosen.method, qat, chosen.contrastive)
    measured = measure(
        lambda: api.quantize(task, config, teacher.model_dir, _quantization(chosen, bits), objective, record={"variant": name})
    )
    best = run_dir / "best"
    scores = _test_scores(job, teacher, data_dir, lambda t, _: api.evaluate(best, t, job.testbed_task.test_split))
    result = _method_result(job, name, bits, run_dir, measured, scores, seed)
    _save_result(run_dir, settings, result)  # last: the run is finished
    return result


def evaluate_untrained(job, teacher, name, bits, run_dir, data_dir, log: Log = print) -> MethodResult:
    """An untrained variant: the teacher's student as `api.prepare` makes it, evaluated on
    testbed-select and the test sets without a step of training (the paper's Figure 1 regime).
    Its result is kept in `run_dir` like a trained run's, so a rerun or a resumed grid skips it."""
    chosen = variant(name)
    metric = job.testbed_task.metric
    settings = _run_settings(job, teacher, name, bits, None)
    reused = _reused(run_dir, settings, log)
    if reused is not None:
        return dataclasses.replace(reused, run_dir=None)

    def run() -> dict[str, float]:
        student = api.prepare(job.testbed_task.model_class.from_pretrained(str(teacher.model_dir)), _quantization(chosen, bits))
        select = api.evaluate(student, _task(job, teacher, data_dir), SELECT_SPLIT)[metric]
        return {SELECT_SPLIT: select, **_test_scores(job, teacher, data_dir, lambda t, _: api.evaluate(student, t, job.testbed_task.test_split))}

    measured = measure(run)
    scores = dict(measured.value)
    select = scores.pop(SELECT_SPLIT)
    result = MethodResult(name, bits, None, select, scores, round(measured.wall_seconds, 1), round(measured.peak_rss_mib, 1), None)
    _fresh(run_dir).mkdir(parents=True)
    _save_result(run_dir, settings, result)
    return result


def full_precision_distillation(job, teacher, run_dir, data_dir, progress) -> MethodResult:
    """`job.reference_steps` steps of logit distillation (`api.distill`) into an unquantized copy of
    the teacher: the step time every method is compared with (no test-set evaluation)."""
    task = _task(job, teacher, data_dir)
    teacher_model = job.testbed_task.model_class.from_pretrained(str(teacher.model_dir))
    config = _training_config(job.qat, REFERENCE, _fresh(run_dir), job.reference_steps, progress)
    measured = measure(lambda: api.distill(task, config, copy.deepcopy(teacher_model), teacher_model, _objective(REFERENCE, job.qat)))
    return _method_result(job, REFERENCE, "-", run_dir, measured, {})


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _rows(job: TestbedJob, teacher_model_config, teacher_scores, results, reference) -> list[ResultRow]:
    """Full precision, then one row per (variant, bits): means over its seeds, with their sd."""
    fp_size = model_size(teacher_model_config, "8-8-8").fp32_mib
    rows = [ResultRow(FULL_PRECISION, None, fp_size, teacher_scores)]
    reference_step = reference.seconds_per_step if reference else None
    for (name, bits), group in grouped(results).items():
        spreads = {test: Spread.of([r.scores[test] for r in group]) for test in group[0].scores}
        extra = {
            "select_score": _mean(r.select_score for r in group),
            "wall_s": _mean(r.wall_seconds for r in group) if variant(name).trained else None,  # no QAT, no QAT time
            "peak_rss_mib": max(r.peak_rss_mib for r in group),
        }
        step = _mean(r.seconds_per_step for r in group)
        if reference_step and step:
            extra["step_time_ratio"] = step / reference_step
        chosen = variant(name)
        rows.append(ResultRow(
            name, bits, model_size(teacher_model_config, bits).quantized_mib,
            {test: spread.mean for test, spread in spreads.items()}, extra,
            label=chosen.label if chosen.label != display_name(name) else None,
            sd={test: spread.sd for test, spread in spreads.items()}, seeds=len(group),
        ))
    return rows


def run_testbed(
    job: TestbedJob = TestbedJob(),
    out_dir: str | Path = "results",
    cache_root: str | Path = "cache",
    data_dir: str | Path = "../shared/data",
    progress: bool = True,
    log: Log = print,
    command: str = "quantgpt run",
    table_stem: str = "table1",
    figures: bool = True,
    runs_dir: str | Path | None = None,
    figures_dir: str | Path | None = None,
    pretrained_root: str | Path = "pretrained",
) -> TestbedResult:
    """Runs `job` and writes `<out_dir>/<table_stem>.md` / `.json` (Table 1 with the command that
    made it), the run directories `<runs_dir>/<method>-<bits>/` (default `<out_dir>/runs`) and the
    figures `<figures_dir>/<bits>/*.png` (default `<out_dir>/figures`). The teacher comes from (or
    goes to) `cache_root`, fine-tuned from the pretrained checkpoint shipped in `pretrained_root`
    when the recipe pretrains. Progress is logged stage by stage."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else out_dir / "runs"
    figures_dir = Path(figures_dir) if figures_dir is not None else out_dir / "figures"
    entries = job.entries()
    total = 2 + len(entries) + (1 if job.reference_steps else 0)
    counter = iter(range(1, total + 1))

    def stage(text: str) -> None:
        log(f"[{next(counter)}/{total}] {text}  (elapsed {time.perf_counter() - started:.0f} s)")

    stage("teacher")
    testbed_task = job.testbed_task
    teacher = testbed_task.get_teacher(job.teacher, cache_root, data_dir, progress, log, pretrained_root=pretrained_root)
    teacher_scores = _test_scores(job, teacher, data_dir, lambda t, name: teacher_evaluation(teacher, t, name, testbed_task.test_split))
    log("teacher: " + ", ".join(
        f"{name} {value:.2f}" if testbed_task.metrics else f"{name} test {testbed_task.metric} {value:.2f}"
        for name, value in teacher_scores.items()
    ) + (f" on {testbed_task.test_split}" if testbed_task.metrics else ""))

    reference = None
    if job.reference_steps:
        stage(f"full-precision distillation, {job.reference_steps} steps (step-time reference)")
        reference = full_precision_distillation(job, teacher, runs_dir / REFERENCE, data_dir, progress)
    results = []
    for name, bits, seed in entries:
        tests = ", ".join(job.test_sets)
        if seed is None:
            stage(f"{name} {bits}: no training, {SELECT_SPLIT} and {tests} test")
            result = evaluate_untrained(job, teacher, name, bits, runs_dir / f"{name}-{bits}", data_dir, log)
        else:
            stage(f"{name} {bits} seed {seed}: quantization-aware training, {job.qat.steps} steps, then {tests} test")
            result = quantize_with_method(job, teacher, name, bits, seed, runs_dir / f"{name}-{bits}-seed{seed}", data_dir, progress, log)
        results.append(result)
        log(
            f"{name} {bits}" + ("" if seed is None else f" seed {seed}") + ": "
            + ", ".join(f"{test} {value:.2f} (FP {teacher_scores[test]:.2f})" for test, value in result.scores.items())
            + f"; {result.wall_seconds:.0f} s"
        )

    stage("table and figures")
    rows = _rows(job, AutoConfig.from_pretrained(str(teacher.model_dir)), teacher_scores, results, reference)
    label = testbed_task.metric_label
    extra_columns = {"select_score": f"{SELECT_SPLIT} {label}", "wall_s": "QAT wall (s)", "peak_rss_mib": "peak RSS (MiB)"}
    if reference is not None:
        extra_columns["step_time_ratio"] = "step time / FP distill"
    verdicts = claim_verdicts(results, job.columns, testbed_task.higher_is_better)
    comparisons = comparisons_markdown(
        results, job.bits, job.columns, job.seeds, verdicts, testbed_task.higher_is_better, testbed_task.score_name,
    )
    notes = _notes(job, teacher, reference) + comparisons
    table, _ = write_table1(
        rows,
        out_dir,
        table_stem,
        command,
        notes=notes,
        extra_columns=extra_columns,
        metric=label,
        job=job.to_dict(),
        teacher=teacher.summary,
        teacher_dir=str(teacher.model_dir),
        reference=None if reference is None else {"seconds_per_step": reference.seconds_per_step, "peak_rss_mib": reference.peak_rss_mib},
        seconds_per_step={f"{r.method} {r.bits}" + ("" if r.seed is None else f" seed {r.seed}"): r.seconds_per_step for r in results},
        runs=[{"method": r.method, "bits": r.bits, "seed": r.seed, "scores": r.scores, "select_score": r.select_score,
               "run_dir": None if r.run_dir is None else str(r.run_dir)} for r in results],
        claims=verdicts,
    )
    drawn: dict[str, dict[str, Path]] = {}
    if figures and job.task == "lm":  # the figures read WikiText-2 (Figure 3) and causal-LM runs
        for bits in job.bits:
            quantized = [r.run_dir for r in results if r.bits == bits and r.seed == job.qat.seed]
            if quantized:
                drawn[bits] = write_report(teacher.run_dirs + quantized, figures_dir / bits, teacher=teacher.model_dir, data_dir=data_dir)
        if drawn:
            _write_figure_index(figures_dir, drawn, command)
    log("\n" + table1_markdown(rows, extra_columns, label) + comparisons)
    log(f"table: {table}; figures: {figures_dir}; total {time.perf_counter() - started:.0f} s")
    return TestbedResult(teacher, teacher_scores, results, reference, table, drawn, time.perf_counter() - started)


FIGURE_TITLES = {
    "embeddings": "Figure 2: word embeddings, full precision beside each method (PCA of the full-precision embedding)",
    "similarity": "Figure 3: token-by-token cosine similarity of last-layer representations on one WikiText-2 test sentence",
    "clipping": "Figure 4: weights of one module and each method's learned clipping range",
    "gamma": "Figure 8: QuantGPT's learned gamma per module",
    "curves": "training loss and held-out perplexity of the teacher's stages and of each method",
}


def _write_figure_index(figures_dir: Path, drawn: dict[str, dict[str, Path]], command: str) -> None:
    """A README beside the PNGs naming the command that drew them (house habit 6)."""
    lines = ["# Figures", "", f"Generated by `{command}`.", ""]
    for bits, files in drawn.items():
        lines += [f"## {bits}", ""]
        lines += [f"- [{FIGURE_TITLES.get(name, name)}]({bits}/{path.name})" for name, path in files.items()]
        lines.append("")
    (figures_dir / "README.md").write_text("\n".join(lines))


_ARCHITECTURE_NAMES = {"gpt2": "GPT-2", "llama": "Llama", "qwen2": "Qwen2", "opt": "OPT"}


def _teacher_notes(job: TestbedJob, teacher: Teacher) -> list[str]:
    """The teacher and the protocol of the job's task."""
    recipe = job.teacher
    stages = ", ".join(f"{s['name']} {s['steps']} steps (best at {s['best_step']}, {s['wall_seconds']:.0f} s)" for s in teacher.summary["stages"])
    if job.task == "xsum":
        return [
            f"- Teacher: BART, {recipe.n_layer} encoder and {recipe.n_layer} decoder layers, width {recipe.n_embd}, "
            f"{recipe.vocab_size}-token byte-level BPE; articles cut to {recipe.block_size} tokens; {stages}; "
            f"{SELECT_SPLIT} ROUGE-2 {teacher.summary['select_score']:.2f}. Pretraining: BART's denoising objective "
            f"(sentence permutation, text infilling of {recipe.mask_ratio:g} of the tokens) on ../shared/data/corpus/nltk-2008.",
            f"- Protocol: {summary_protocol(recipe)} 100 pairs make a small test set: ROUGE differences of a point can be noise.",
        ]
    model = (f"{_ARCHITECTURE_NAMES[recipe.architecture]} {recipe.n_layer} layers, width {recipe.n_embd}, "
             f"{recipe.vocab_size}-token byte-level BPE")
    if job.task == "lm":
        return [
            f"- Teacher: {model}, blocks of {recipe.block_size}; {stages}; {SELECT_SPLIT} perplexity {teacher.summary['select_perplexity']:.2f}.",
            "- Protocol: WikiText-2's validation split is the training text (last 10% of its lines held out as "
            f"{SELECT_SPLIT}), test splits for reporting (../shared/data/README.md). Perplexities are per BPE token of this "
            "tokenizer, so only ratios to full precision compare with the paper. PTB test is evaluated with the models "
            "trained on WikiText-2 (no PTB fine-tuning).",
        ]
    examples = eval_examples(recipe)
    rate = teacher.summary["select_score"] / 100  # the teacher's own hit rate, not a guess
    return [
        f"- Teacher: the double-head {model} (plus the 5 Persona-Chat special tokens, a multiple-choice head started at random), "
        f"sequences of at most {recipe.block_size} tokens; {stages}; {SELECT_SPLIT} hits@1 {teacher.summary['select_score']:.2f}.",
        "- Protocol: Persona-Chat's validation dialogues are the training data (the last 10% of the dialogues held out as "
        f"{SELECT_SPLIT}); hits@1 of 20 candidates (19 distractors drawn with a fixed seed, ../shared/data/README.md) on the "
        f"first {examples} examples of test (and of {SELECT_SPLIT}), so one model's score has a sampling error of about "
        f"{_binomial_se_points(rate, examples):.1f} points at the teacher's {100 * rate:.1f}% on {SELECT_SPLIT}; "
        "every row is scored on the same examples.",
    ]


def _binomial_se_points(rate: float, n: int) -> float:
    return 100 * (rate * (1 - rate) / n) ** 0.5


def _notes(job: TestbedJob, teacher: Teacher, reference: MethodResult | None) -> str:
    unit = {"lm": "blocks", "xsum": "article/summary pairs"}.get(job.task, "dialogues (2 candidates each)")
    lines = [
        *_teacher_notes(job, teacher),
        f"- QAT: {job.qat.steps} steps of {job.qat.batch_size} {unit}, lr {job.qat.learning_rate:g}, quantizer lr "
        f"{job.qat.quantizer_learning_rate:g}"
        + "".join(f" ({m}: {r:g})" for m, r in job.qat.method_quantizer_learning_rates.items())
        + f", linear decay to 0, best of every {job.qat.eval_every} steps on {SELECT_SPLIT}; "
        + _quantgpt_objective_text(job.qat) + "; baselines and peers: logit distillation.",
        "- Size: the paper's accounting (docs/method.md#size-accounting) applied to this model.",
        "- No training: the student as `quantgpt.api.prepare` makes it from the teacher (8-bit activations included), "
        "evaluated without a step of training, the paper's Figure 1 regime: RTN clips each matrix at max|w|, QuantGPT's "
        "quantizer at its initial gamma = 1 clips at mean|w| (docs/method.md#module-wise-dynamic-scaling).",
        f"- Seeds: each trained row is the mean ± standard deviation over QAT seeds "
        f"{', '.join(str(job.qat.seed + i) for i in range(job.seeds))} (data order, negatives, projections); one teacher.",
    ]
    if reference is not None and reference.seconds_per_step:
        lines.append(
            f"- Step time: seconds per optimizer step from each run's metrics, before its first evaluation, divided by "
            f"plain full-precision logit distillation of the same model in the same process ({reference.seconds_per_step:.3f} s/step). "
            "Peak RSS: the whole process while the run trained and was evaluated."
        )
    if job.peers:
        lines.append(
            "- torchao peer: torchao's IntxFakeQuantizer (per-channel symmetric int-b, max-abs scale, STE) on every weight matrix "
            "and the embedding, with this package's activation quantizers, loss and loop. Its b-bit grid has 2^b levels "
            "(two's complement; 4 at 2 bits vs the paper's ternary 3) and one scale per output channel (vs one per matrix)."
        )
    return "\n".join(lines) + "\n"
