"""Two tiny training runs through the loop, for test_training_multiprocess.

Launched by the test under `accelerate launch --multi_gpu --num_processes 2` (on a machine without
GPUs Accelerate then runs two CPU processes over gloo), and called in-process for the one-process
reference. Both runs quantize weights and embedding at 2 bits and keep activations in full
precision: 8-bit activation ranges are the min-max of each process's own micro-batch, so with them
two processes of 2 sequences legitimately differ from one process of 4 (as batch-norm statistics
would).

- `<out>/logit`: PACT with logit distillation only.
- `<out>/contrastive`: QuantGPT, logit distillation + the token-level contrastive loss; each
  process saves its memory banks as `banks-rank<i>.safetensors` there.
"""

from __future__ import annotations

import sys
from pathlib import Path

from accelerate.utils import set_seed
from safetensors.torch import save_file

from quantgpt.api import load_task
from quantgpt.config import QuantConfig
from quantgpt.distill import ContrastiveConfig
from quantgpt.training import ObjectiveConfig, TrainingConfig, build_objective, make_accelerator, train
from quantgpt.training.models import pretrained_model, quantized_copy

GLOBAL_BATCH = 4
STEPS = 4


def run_one(teacher_dir: str, data_dir: str, output_dir: Path, method: str) -> None:
    task = load_task(
        "lm", teacher_dir, dataset="wikitext-2", data_dir=data_dir, block_size=32,
        train_split="testbed-train", max_train_blocks=16, max_eval_blocks=3, eval_batch_size=2,
    )
    training = TrainingConfig(
        output_dir=str(output_dir), batch_size=GLOBAL_BATCH, max_steps=STEPS, eval_every=0, save_every=0,
        log_every=1, eval_split="testbed-select", progress=False,
    )
    set_seed(training.seed)
    teacher = pretrained_model(task.model_class(), teacher_dir)
    student = quantized_copy(teacher, QuantConfig(method, "2-2-8", quantize_activations=False))
    # 32 negatives for 32-token blocks: every other position is a negative, nothing is sampled, so the
    # contrastive loss does not depend on how the random numbers fall on each process.
    objective_config = ObjectiveConfig.for_method(method, ContrastiveConfig(num_negatives=32))
    objective = build_objective(objective_config, student.config, teacher.config)
    accelerator = make_accelerator(training)
    train(student=student, teacher=teacher, task=task, objective=objective, config=training, accelerator=accelerator)
    if objective_config.contrastive is not None:
        distiller = objective.distiller
        save_file(
            {
                "student_bank": distiller.student_bank.vectors.cpu().contiguous(),
                "teacher_bank": distiller.teacher_bank.vectors.cpu().contiguous(),
                "written": distiller.student_bank.written.cpu().contiguous(),
            },
            str(output_dir / f"banks-rank{accelerator.process_index}.safetensors"),
        )


def run(teacher_dir: str, data_dir: str, output_dir: str) -> None:
    run_one(teacher_dir, data_dir, Path(output_dir) / "logit", "pact")
    run_one(teacher_dir, data_dir, Path(output_dir) / "contrastive", "quantgpt")


if __name__ == "__main__":
    run(*sys.argv[1:4])
