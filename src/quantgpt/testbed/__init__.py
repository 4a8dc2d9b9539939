"""The CPU testbed: a small teacher trained from scratch on real text, every method quantized from it,
evaluated on WikiText-2 test and PTB test, with the paper's Table 1 and figures.

    tokenizer.py   a byte-level BPE tokenizer near 8k tokens, trained on the training text
"""
