# SPDX-License-Identifier: Apache-2.0
"""``monai-adiff benchmark``: every method on the same held-out patients, one table with pictures."""

from .pipeline import DEFAULT_BUNDLES, run_benchmark
from .results import CSV_COLUMNS, markdown_table, method_rows

__all__ = ["CSV_COLUMNS", "DEFAULT_BUNDLES", "markdown_table", "method_rows", "run_benchmark"]
