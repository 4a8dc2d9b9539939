"""Tables and figures from run outputs: the paper's Table 1 and Figures 2, 3, 4, 8, training curves.

    write_report(run_dirs, out_dir)     every figure the runs allow, as PNG files
    table1_markdown(rows) / write_table1(rows, out_dir, stem, command)   Table 1 from ResultRows
"""

from .collect import FIGURE_FILES, default_sentence, write_report
from .runs import RunInfo, read_run
from .table import FULL_PRECISION, ResultRow, ratios_to_full_precision, table1_json, table1_markdown, write_table1

__all__ = [
    "FIGURE_FILES",
    "FULL_PRECISION",
    "ResultRow",
    "RunInfo",
    "default_sentence",
    "ratios_to_full_precision",
    "read_run",
    "table1_json",
    "table1_markdown",
    "write_report",
    "write_table1",
]
