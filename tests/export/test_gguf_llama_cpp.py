"""The GGUF file against real llama.cpp (llama-cpp-python), on small QAT-trained decoders and real text.

One model per family (GPT-2, Llama, Qwen2) per session: a byte-level BPE trained on the testbed's
text (like the testbed's), a teacher of width 256 and 2 layers fine-tuned on WikiText-2 (testbed
split), then QuantGPT at 2-2-8, all through the command line, about a minute of one CPU thread for
GPT-2 and less for the others (trained more briefly). Then, on WikiText-2 test (its first blocks):

- llama.cpp tokenizes the whole split to exactly our ids;
- its next-token distributions match the quantized model's with activation quantization off
  (llama.cpp keeps activations in higher precision): mean KL < 1e-3, top-1 agreement >= 95%;
- its perplexity on the same blocks is within 2% of `quantgpt evaluate`'s, evaluated with
  activation quantization off too (the same setting).

In CI (env CI set) a missing llama-cpp-python fails the test; locally it skips (`llama_cpp_checks`).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from llama_cpp_checks import MAX_KL, MAX_PERPLEXITY_GAP, MIN_TOP1, compare_with_llama_cpp, llama_cpp_module

from quantgpt.cli import main
from quantgpt.serialization import load_quantized
from quantgpt.tasks.language_modeling import load_lm_text
from quantgpt.testbed.tokenizer import save_tokenizer, train_bpe_tokenizer

from tiny_models import tiny_config

# One worker runs the whole file (`make test` distributes with --dist loadgroup): the model is trained once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gguf-llama-cpp")]

BLOCK = 128  # the model's context: llama.cpp scores each block in a fresh context of this size
EVAL_BLOCKS = 24
PROMPT = "The tower is"
# family -> (finetune steps, quantize steps); Llama and Qwen2 briefly, to keep the file's CPU time down.
FAMILIES = {"gpt2": (150, 60), "llama": (100, 40), "qwen2": (100, 40)}


@pytest.fixture(scope="module")
def llama_cpp():
    return llama_cpp_module()


def _data_flags(shared_data) -> list[str]:
    return ["--task", "lm", "--dataset", "wikitext-2", "--data-dir", str(shared_data), "--block-size", str(BLOCK)]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, shared_data):
    directory = tmp_path_factory.mktemp("gguf-tokenizer")
    save_tokenizer(train_bpe_tokenizer(load_lm_text("wikitext-2", "testbed-train", shared_data), vocab_size=2048), directory)
    return directory


def _model_config(family: str, vocab_size: int):
    tokens = {"vocab_size": vocab_size, "bos_token_id": 0, "eos_token_id": 0}  # the tokenizer's <|endoftext|>
    if family == "gpt2":
        return tiny_config("tiny", n_embd=256, n_head=4, n_positions=BLOCK, **tokens)
    return tiny_config(f"tiny-{family}", **tokens)  # width 256, 2 layers, grouped-query attention


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, shared_data, tokenizer_dir, llama_cpp):
    """family -> a QuantGPT 2-2-8 run trained from a fine-tuned teacher, and a copy of its model
    with activation quantization off (what llama.cpp computes); each trained when first asked for."""
    runs = {}

    def run(family: str):
        if family not in runs:
            runs[family] = _train(family, tmp_path_factory.mktemp(f"gguf-interop-{family}"), shared_data, tokenizer_dir)
        return runs[family]

    return run


def _train(family, root, shared_data, tokenizer_dir):
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    finetune_steps, quantize_steps = FAMILIES[family]
    _model_config(family, len(AutoTokenizer.from_pretrained(str(tokenizer_dir)))).save_pretrained(root / "config")
    training = [*_data_flags(shared_data), "--train-split", "testbed-train", "--eval-split", "testbed-select",
                "--batch-size", "4", "--max-eval-examples", "4", "--eval-every", "0", "--save-every", "0",
                "--no-progress"]
    assert main(["finetune", *training, "--model-config", str(root / "config"), "--tokenizer", str(tokenizer_dir),
                 "--lr", "3e-3", "--warmup-steps", "10", "--max-steps", str(finetune_steps),
                 "--output-dir", str(root / "teacher")]) == 0
    assert main(["quantize", *training, "--teacher", str(root / "teacher" / "best"), "--method", "quantgpt",
                 "--bits", "2-2-8", "--lr", "1e-3", "--quantizer-lr", "2e-2", "--max-steps", str(quantize_steps),
                 "--output-dir", str(root / "q228")]) == 0
    float_activations = root / "q228-float-activations"
    shutil.copytree(root / "q228" / "best", float_activations)
    config = json.loads((float_activations / "config.json").read_text())
    config["quantization_config"]["quantize_activations"] = False
    (float_activations / "config.json").write_text(json.dumps(config))
    return root / "q228", float_activations


@pytest.fixture(scope="module")
def test_text(shared_data) -> str:
    """WikiText-2 test as the release file (each line followed by a newline), as the task reads it."""
    return "".join(line + "\n" for line in load_lm_text("wikitext-2", "test", shared_data))


@pytest.fixture(scope="module")
def our_ids(tokenizer_dir, test_text) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    return tokenizer(test_text, add_special_tokens=False, verbose=False)["input_ids"]


@pytest.fixture(scope="module")
def trained_run(gguf_model):
    return gguf_model[2]


@pytest.fixture(
    scope="module", params=[("gpt2", "tq2_0"), ("gpt2", "tq1_0"), ("llama", "tq2_0"), ("qwen2", "tq2_0")],
    ids=lambda param: "-".join(param),
)
def gguf_model(request, trained_runs, tmp_path_factory, llama_cpp):
    from quantgpt.export.gguf_runtime import load_gguf

    family, ternary_type = request.param
    run = trained_runs(family)
    path = tmp_path_factory.mktemp("gguf") / f"{family}-q228-{ternary_type}.gguf"
    assert main(["export", str(run[0]), str(path), "--format", "gguf", "--ternary-type", ternary_type]) == 0
    llm = load_gguf(path, threads=1, n_ctx=BLOCK, logits_all=True)
    yield path, llm, run
    llm.close()


def test_llama_cpp_tokenizes_to_our_ids(gguf_model, our_ids, test_text):
    from quantgpt.export.gguf_runtime import tokenize

    theirs = tokenize(gguf_model[1], test_text)
    assert len(theirs) == len(our_ids) > 200_000
    assert theirs == our_ids


def test_llama_cpp_matches_the_quantized_model_and_quantgpt_evaluate(gguf_model, trained_run, shared_data, our_ids, capsys):
    ids = torch.tensor(our_ids[: EVAL_BLOCKS * BLOCK]).view(EVAL_BLOCKS, BLOCK)  # the blocks quantgpt evaluate scores
    model = load_quantized(trained_run[1])  # activation quantization off: llama.cpp's setting
    with torch.no_grad():
        confidence = torch.softmax(model(ids).logits, dim=-1).max(-1).values.mean()
    assert confidence > 20 / model.config.vocab_size  # a trained model, far from uniform
    kl, top1, llama_perplexity = compare_with_llama_cpp(gguf_model[1], model, ids)
    assert kl < MAX_KL, f"mean KL {kl:.2e}"
    assert top1 >= MIN_TOP1, f"top-1 agreement {top1:.3f}"

    targets = ids[:, 1:]
    capsys.readouterr()
    assert main(["evaluate", str(trained_run[1]), *_data_flags(shared_data), "--split", "test",
                 "--max-eval-examples", str(EVAL_BLOCKS), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["tokens"] == targets.numel()  # the same blocks, every token but each block's first
    gap = abs(llama_perplexity / evaluated["perplexity"] - 1)
    with capsys.disabled():  # the README's figures: `pytest -s tests/export/test_gguf_llama_cpp.py`
        print(f"\n{gguf_model[0].stem}: mean KL {kl:.1e}, top-1 {top1:.2%}, perplexity llama.cpp "
              f"{llama_perplexity:.3f} vs quantgpt evaluate {evaluated['perplexity']:.3f} (gap {gap:.3%})")
    assert gap < MAX_PERPLEXITY_GAP, f"llama.cpp {llama_perplexity:.2f} vs quantgpt evaluate {evaluated['perplexity']:.2f}"


def test_quantgpt_generate_runs_the_file_through_llama_cpp(gguf_model, trained_run, capsys):
    from quantgpt.tokenization import load_decoder_tokenizer

    tokenizer = load_decoder_tokenizer(trained_run[1])  # the LM task's loader (AutoTokenizer would follow model_type)
    model = load_quantized(trained_run[1])
    prompt = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        greedy = model.generate(**prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    expected = PROMPT + tokenizer.decode(greedy[0, prompt["input_ids"].shape[1]:])

    capsys.readouterr()
    assert main(["generate", str(gguf_model[0]), "--prompt", PROMPT, "--max-new-tokens", "8", "--threads", "1"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == expected
