# SPDX-License-Identifier: Apache-2.0
"""Data: datalists of BraTS-style folders, slice tables, patient splits, the 2D slice dataset and demo data."""

from monai_adiff.errors import InputError, find_input_error

from .datalist import (
    BRATS_MODALITIES,
    case_id_from_path,
    load_cases,
    read_datalist,
    scan_brats_folder,
    split_cases,
    split_items,
    validate_items,
    with_image_key,
    write_datalist,
)
from .dataset import SELECTIONS, BrainSliceDataset
from .io import check_case, check_volume, ras_axial, read_volume
from .sampling import class_balanced_sampler
from .slices import build_slice_table, case_slice_table, summarize_slice_table, table_to_csv

__all__ = [
    "BRATS_MODALITIES",
    "SELECTIONS",
    "case_id_from_path",
    "BrainSliceDataset",
    "InputError",
    "build_slice_table",
    "case_slice_table",
    "find_input_error",
    "check_case",
    "class_balanced_sampler",
    "check_volume",
    "load_cases",
    "ras_axial",
    "read_datalist",
    "read_volume",
    "scan_brats_folder",
    "split_cases",
    "split_items",
    "summarize_slice_table",
    "table_to_csv",
    "validate_items",
    "with_image_key",
    "write_datalist",
]
