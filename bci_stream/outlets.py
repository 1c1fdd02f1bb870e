"""The daemon's results as LSL outlets, so a lab's recorder (LabRecorder) stores them next to the EEG.

Two streams, fed by the :class:`~bci_stream.publish.Publisher` as a *sink* (called with every message
after it went out on ZeroMQ):

- ``<model>-predictions`` (type ``Predictions``): irregular, one string channel; one JSON payload per
  answered marker — the ``prediction`` or ``drop`` message exactly as on the wire — stamped at the
  marker's LSL time, so in an XDF file it sits on the stimulus it answers.
- ``<valence model>-valence`` (type ``Valence``): regular float32 at the hop rate (``1 / hop`` Hz), one
  channel ``valence``, stamped at the end of each feature window. Only when a valence model is served.

Both have stable ``source_id`` values derived from the model name and the ZeroMQ endpoint, so a
recorder reconnects to them across daemon restarts.
"""

from __future__ import annotations

import hashlib
import logging

import pylsl

from .card import ModelCard
from .errors import BciStreamError
from .messages import Drop, Message, Prediction, Valence

log = logging.getLogger(__name__)

#: Unit written in the valence channel's metadata: the valence models' scale has no physical unit.
VALENCE_UNIT = "a.u."


def result_source_id(model: str, endpoint: str, kind: str) -> str:
    """A stable ``source_id`` for the ``kind`` outlet (``predictions``/``valence``) of ``model`` at ``endpoint``."""
    digest = hashlib.sha1(f"{model}\0{endpoint}\0{kind}".encode()).hexdigest()[:12]
    return f"bci-stream-{kind}-{digest}"


class ResultOutlets:
    """LSL outlets for predictions/drops and (optionally) valence; call with each published message.

    Parameters
    ----------
    card : ModelCard
        The classifier's card: names the predictions stream and fills its metadata (classes).
    endpoint : str
        The daemon's ZeroMQ endpoint; part of the stable ``source_id`` and recorded in the metadata.
    valence_card : ModelCard, optional
        The valence model's card; with it a ``Valence`` stream at ``1 / hop`` Hz is opened too.
    session : str
        The daemon's run id, recorded in the metadata.

    Raises
    ------
    BciStreamError
        If liblsl cannot create an outlet.
    """

    def __init__(
        self, card: ModelCard, *, endpoint: str, valence_card: ModelCard | None = None, session: str = ""
    ) -> None:
        self.predictions_name = f"{card.name}-predictions"
        self.predictions_source_id = result_source_id(card.name, endpoint, "predictions")
        self.valence_name: str | None = None
        self.valence_source_id: str | None = None
        self._valence: pylsl.StreamOutlet | None = None
        try:
            info = pylsl.StreamInfo(
                self.predictions_name,
                "Predictions",
                1,
                pylsl.IRREGULAR_RATE,
                pylsl.cf_string,
                self.predictions_source_id,
            )
            desc = info.desc()
            channel = desc.append_child("channels").append_child("channel")
            channel.append_child_value("label", "payload")
            channel.append_child_value("type", "JSON")
            channel.append_child_value("unit", "json")
            self._describe(desc, card, endpoint, session)
            classes = desc.append_child("classes")
            for cls in card.output.classes:
                classes.append_child_value("class", cls)
            self._predictions: pylsl.StreamOutlet | None = pylsl.StreamOutlet(info)
            if valence_card is not None:
                self._open_valence(valence_card, endpoint, session)
        except RuntimeError as exc:  # pylsl raises RuntimeError when liblsl fails
            self.close()
            raise BciStreamError(
                f"cannot create the LSL result outlet {self.predictions_name!r}: {exc}; "
                "check liblsl's network configuration (lsl_api.cfg), or set [publish] lsl = false"
            ) from exc
        log.info(
            "LSL result outlets open: %r (Predictions, source_id %s)%s",
            self.predictions_name,
            self.predictions_source_id,
            f" and {self.valence_name!r} (Valence, source_id {self.valence_source_id})" if self.valence_name else "",
        )

    def _open_valence(self, card: ModelCard, endpoint: str, session: str) -> None:
        features = card.input.features
        assert features is not None  # a valence card always has them (ModelCard checks)
        self.valence_name = f"{card.name}-valence"
        self.valence_source_id = result_source_id(card.name, endpoint, "valence")
        info = pylsl.StreamInfo(
            self.valence_name, "Valence", 1, 1.0 / features.hop, pylsl.cf_float32, self.valence_source_id
        )
        desc = info.desc()
        channel = desc.append_child("channels").append_child("channel")
        channel.append_child_value("label", "valence")
        channel.append_child_value("type", "Valence")
        channel.append_child_value("unit", VALENCE_UNIT)
        value_range = getattr(card.output, "range", None)
        if value_range is not None:
            channel.append_child_value("range", f"{value_range[0]:g} {value_range[1]:g}")
        self._describe(desc, card, endpoint, session)
        self._valence = pylsl.StreamOutlet(info)

    @staticmethod
    def _describe(desc: pylsl.XMLElement, card: ModelCard, endpoint: str, session: str) -> None:
        model = desc.append_child("model")
        model.append_child_value("name", card.name)
        model.append_child_value("version", card.version)
        model.append_child_value("task", card.task)
        acquisition = desc.append_child("acquisition")
        acquisition.append_child_value("manufacturer", "bci-stream")
        acquisition.append_child_value("endpoint", endpoint)
        acquisition.append_child_value("session", session)

    def __call__(self, message: Message) -> None:
        """Push ``message`` to its outlet: predictions/drops at the marker time, valence at the window end."""
        if isinstance(message, Prediction | Drop):
            if self._predictions is not None:
                self._predictions.push_sample([message.model_dump_json()], message.marker.time)
        elif isinstance(message, Valence) and self._valence is not None:
            self._valence.push_sample([message.value], message.window_end)

    def have_consumers(self) -> bool:
        """Whether any result outlet has an inlet (a recorder) connected."""
        return any(o is not None and o.have_consumers() for o in (self._predictions, self._valence))

    def close(self) -> None:
        """Destroy the outlets (idempotent); pylsl frees an outlet with its last reference."""
        self._predictions = None
        self._valence = None
