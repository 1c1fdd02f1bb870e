"""Small, reproducible benchmarks on shared data (run as modules, e.g. ``python -m training.benchmarks.eeglab_blocks``)."""
