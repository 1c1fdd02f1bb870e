"""The offline side of bci-stream: synthetic data, teachers, students, distillation, export.

Only this package imports torch (lazily, in the modules that train or export); ``bci_stream`` never does.
"""
