"""The deployment side: a quantized model exported as packed low-bit codes, and loaded back to run.

    export_packed(model_or_dir, out_dir)   # ternary 5 per byte, 3-4 bits in nibbles, 8 bits int8
    model = load_packed(out_dir)           # a Transformers model whose linear layers use int8 codes
    generate_text(model, tokenizer, "prompt")

`packing` turns codes into bytes, `packed_format` writes and validates the directory, `exporter`
walks a fake-quantized model, `lowbit_layers` and `runtime` rebuild it for inference, `generation`
drives `model.generate` with the tokenizer stored beside the packed model. `export_gguf` writes the
same codes as one GGUF file for llama.cpp (`gguf_writer`), `gguf_runtime` runs it there.
"""

from .exporter import ExportResult, export_packed, packed_entries, resolve_quantized_dir
from .generation import generate_text, load_packed_tokenizer
from .gguf_writer import GGUFExportResult, export_gguf
from .lowbit_layers import Int8Weight, LowBitEmbedding, LowBitLinear
from .packed_format import DenseTensor, PackedFormatError, PackedTensor, read_packed, write_packed
from .runtime import build_packed_model, load_packed

__all__ = [
    "DenseTensor",
    "ExportResult",
    "GGUFExportResult",
    "Int8Weight",
    "LowBitEmbedding",
    "LowBitLinear",
    "PackedFormatError",
    "PackedTensor",
    "build_packed_model",
    "export_gguf",
    "export_packed",
    "generate_text",
    "load_packed",
    "load_packed_tokenizer",
    "packed_entries",
    "read_packed",
    "resolve_quantized_dir",
    "write_packed",
]
