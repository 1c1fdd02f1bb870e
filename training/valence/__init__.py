"""Continuous valence from EEG band power, with visual → EEG distillation (METHODS.md §4).

- :mod:`.data`: trials (EEG recording + valence trace + optional teacher features), the synthetic generator,
  the DEAP ``sNN.dat`` loader, the per-trial ``.npz`` format (MAHNOB-HCI-style continuous labels), and the
  feature sequences computed by :mod:`bci_stream.features` (the daemon's code).
- :mod:`.model`: the causal TCN student and the CCC / KD losses (torch).
- :mod:`.fit`: training with fixed optimiser steps, feature standardisation fitted on the training split.
- :mod:`.evaluate`: trial-shuffle 10-fold and leave-one-subject-out CV, CCC / r / RMSE, paired test, report.
- :mod:`.export`: ONNX + model card (``task = "valence"``), ORT-vs-torch parity check.
- :mod:`.cli`: ``synth | fit | evaluate | export``.

Only :mod:`.model`, :mod:`.fit`, :mod:`.evaluate` (when it trains) and :mod:`.export` import torch.
"""
