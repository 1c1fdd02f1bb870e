"""More students for :data:`training.students.STUDENTS`: baselines, the joint-embedding encoder, braindecode models.

Every class takes ``(n_chans, n_outputs, n_times, sfreq, **options)``, reads ``(batch, n_times, n_chans)`` float32
(NTC), returns logits ``(batch, n_outputs)`` and has ``features(x) -> (batch, d)``. braindecode is imported only
when one of its models is built.
"""

from .baselines import Conv1dNet, EEGImageNetLSTM
from .braindecode_models import EEGNetStudent, ShallowFBCSPStudent
from .joint import JointEncoder

__all__ = ["Conv1dNet", "EEGImageNetLSTM", "EEGNetStudent", "JointEncoder", "ShallowFBCSPStudent"]
