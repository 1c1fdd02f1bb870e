"""Dataset readers and leak-checked split builders for offline training and evaluation."""

from .eeg_imagenet import (
    EEGImageNet,
    SplitLeakError,
    assert_disjoint,
    leave_one_subject_out,
    load_eeg_imagenet,
    load_splits,
    split_by_block,
    split_by_image,
    synthetic_eeg_imagenet,
)

__all__ = [
    "EEGImageNet",
    "SplitLeakError",
    "assert_disjoint",
    "leave_one_subject_out",
    "load_eeg_imagenet",
    "load_splits",
    "split_by_block",
    "split_by_image",
    "synthetic_eeg_imagenet",
]
