"""``[data] split`` of ``bci-train fit`` on real recordings: leakage-free units by default, by-trial only when asked
(and recorded as leaky), impossible splits refused before training with the key named."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from bci_stream.errors import ConfigError
from bci_stream.recordings import read_recording
from tests.real.test_fit_real import card_of, eeglab_data, write
from training import leaks
from training.runs import TRIAL_LEAK, fit_run

PARTS = ("train", "validation", "test")


def n170_data(paths: list[Path], extra: str = "") -> str:
    return f"""
recordings = {json.dumps([str(p) for p in paths])}
events = "^stim/"
label_regex = "stim/(?P<label>face|house)"
image_regex = ""
tmin = 0.0
tmax = 0.6
notch = 0.0
bandpass = [1.0, 30.0]
{extra}
"""


def side_of(split: dict) -> dict[int, str]:
    return {i: part for part in PARTS for i in split[part]["index"]}


def faces_only(run: Path, tmp_path: Path) -> Path:
    """A copy of the real N170 ``run`` with its house trials' markers removed: a run in which only faces were shown
    (the EEG is the run's own)."""
    import mne

    raw = mne.io.read_raw_fif(run, preload=True, verbose="error")
    raw.set_annotations(raw.annotations[[d != "stim/house" for d in raw.annotations.description]])
    out = tmp_path / run.name.replace("_eeg.fif", "-faces_eeg.fif")
    raw.save(out, verbose="error")
    return out


def class_counts_of(paths: list[Path]) -> list[dict[str, int]]:
    """Per recording, its stimulus markers per class (face, house), read from the files."""
    return [{c: sum(m.value == f"stim/{c}" for m in read_recording(p).markers) for c in ("face", "house")}
            for p in paths]  # fmt: skip


def test_eeglab_label_field_run_splits_by_block_by_default(eeglab, tmp_path: Path, monkeypatch) -> None:
    """The blocked EEGLAB file: no image ids, one recording → by block; no block has trials on both sides, and
    the leak check runs on exactly that split."""
    seen: list[tuple[list[int], list[int]]] = []
    real_check = leaks.check_epoch_split

    def spy(recordings, data, train, held_out, **kw):  # type: ignore[no-untyped-def]
        seen.append((sorted(int(i) for i in train), sorted(int(i) for i in held_out)))
        return real_check(recordings, data, train, held_out, **kw)

    monkeypatch.setattr(leaks, "check_epoch_split", spy)
    result = fit_run(write(tmp_path, eeglab_data(eeglab, 'label_field = "position"')), out=tmp_path / "run",
                     progress=False)  # fmt: skip
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["unit"] == "block" and split["split"] == "by-block" and split["leaky"] is None
    assert split["chosen"].startswith("default")
    assert result.metrics["split"] == "by-block" and result.metrics["split_info"]["leaky"] is None
    assert card_of(tmp_path / "run").provenance["split"] == "by-block"

    # the blocks, rebuilt here from the markers (runs of the same position, in recording order)
    rec = read_recording(eeglab, event_fields=["position"])
    positions = [m.value for m in rec.markers if m.value.startswith("square")]
    assert len(side_of(split)) == len(positions) == 80  # every square epoch kept, in marker order
    sides, start = side_of(split), 0
    blocks = [len(list(run)) for _, run in itertools.groupby(positions)]
    assert len(blocks) == 13
    for n in blocks:
        assert len({sides[i] for i in range(start, start + n)}) == 1, f"block at trial {start} on both sides"
        start += n
    assert {sides[i] for i in range(80)} == {"train", "validation"}  # both parts hold whole blocks
    # the leak check ran on the split that was used
    assert seen == [(sorted(split["train"]["index"]), sorted(split["validation"]["index"]))]


def test_by_recording_keeps_each_n170_run_on_one_side(sub02, tmp_path: Path) -> None:
    config = write(tmp_path, n170_data(sub02, 'split = "by-recording"'), "n170")
    result = fit_run(config, out=tmp_path / "run", progress=False)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["split"] == "by-recording" and split["chosen"] == "[data] split"
    names = {p.name for p in sub02}
    assert len(split["train"]["recordings"]) == len(split["validation"]["recordings"]) == 1
    assert set(split["train"]["recordings"]) | set(split["validation"]["recordings"]) == names
    # epoch indices: recording 0's epochs come first, then recording 1's; each block of indices on one side
    n_first = sum(1 for m in read_recording(sub02[0]).markers if m.value.startswith("stim/"))
    sides = side_of(split)
    assert {sides[i] for i in range(n_first)} != {sides[i] for i in range(n_first, len(sides))}
    assert len({sides[i] for i in range(n_first)}) == len({sides[i] for i in range(n_first, len(sides))}) == 1
    assert result.metrics["split_info"]["groups"] == {"train": 1, "validation": 1, "test": 0}
    assert card_of(tmp_path / "run").provenance["split"] == "by-recording"
    # epochs per class on each side, as the markers of the recording on that side give them (test: none)
    per_recording = dict(zip([p.name for p in sub02], class_counts_of(sub02), strict=True))
    expected = {part: per_recording[split[part]["recordings"][0]] for part in ("train", "validation")}
    expected["test"] = {"face": 0, "house": 0}
    assert all(min(c.values()) > 0 for c in per_recording.values()), per_recording
    assert split["classes"] == expected, split["classes"]
    assert result.metrics["split_info"]["classes"] == expected
    assert card_of(tmp_path / "run").provenance["split_info"]["classes"] == expected  # type: ignore[index]

    # bci-train evaluate rebuilds the same by-recording split (checked against split.json) and names it
    from training.evaluate_run import evaluate_run

    ev = evaluate_run(tmp_path / "run", n_permutations=1000)
    assert "by recording" in ev["split"] and ev["predictions"]["chance_majority"] >= 0.5


def test_by_trial_is_allowed_but_warned_and_recorded_as_leaky(eeglab, tmp_path: Path, caplog) -> None:
    config = write(tmp_path, eeglab_data(eeglab, 'label_field = "position"', 'split = "by-trial"'))
    with caplog.at_level("WARNING"):
        result = fit_run(config, out=tmp_path / "run", progress=False)
    assert "[data] split = 'by-trial'" in caplog.text and "not independent" in caplog.text
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["unit"] == "trial" and split["leaky"] == TRIAL_LEAK
    assert result.metrics["split"] == "by-trial" and result.metrics["split_info"]["leaky"] == TRIAL_LEAK
    card = card_of(tmp_path / "run")
    assert card.provenance["split"] == "by-trial"
    assert "not independent" in card.provenance["split_info"]["leaky"]  # type: ignore[index]
    assert "not independent" in (tmp_path / "run" / "report.md").read_text()


def test_strict_refuses_split_by_trial_before_training(eeglab, tmp_path: Path) -> None:
    config = write(tmp_path, eeglab_data(eeglab, 'label_field = "position"', 'split = "by-trial"\nstrict = true'))
    with pytest.raises(ConfigError) as err:
        fit_run(config, out=tmp_path / "run", progress=False)
    message = str(err.value)
    assert str(config) in message and "[data] split = 'by-trial'" in message, message
    assert "refusing a leaky split ([data] strict = true)" in message, message
    assert all(f"split = {s!r}" in message for s in ("by-recording", "by-block", "by-image")), message
    assert not (tmp_path / "run").exists()  # refused before anything was written or trained


def test_strict_refuses_a_copied_recording_naming_the_key(eeglab, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy_of_test_raw.set"
    shutil.copyfile(eeglab, copy)
    shutil.copyfile(eeglab.with_suffix(".fdt"), copy.with_suffix(".fdt"))
    data = eeglab_data(eeglab, 'label_field = "position"', "strict = true").replace(
        f'recordings = ["{eeglab}"]', f'recordings = ["{eeglab}", "{copy}"]'
    )
    with pytest.raises(leaks.LeakError) as err:
        fit_run(write(tmp_path, data), out=tmp_path / "run", progress=False)
    message = str(err.value)
    assert "refusing to fit ([data] strict = true)" in message and "copy_of_test_raw.set" in message, message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("case", "keys"),
    [
        ("eeglab-by-recording", ["[data] split = 'by-recording'", "got 1", "'by-block'"]),
        ("eeglab-by-image-no-ids", ["[data] split = 'by-image'", "matches no marker", "'by-block'"]),
        ("eeglab-by-image-empty-regex", ["split", "'by-image'", "image_regex is empty", "'by-block'"]),
        ("n170-by-recording-with-test", ["[data] split = 'by-recording'", "at least 3", "got 2", "'by-block'"]),
    ],
)
def test_impossible_splits_are_refused_before_training(eeglab, sub02, tmp_path: Path, case, keys) -> None:
    field = 'label_field = "position"'
    data = {
        "eeglab-by-recording": eeglab_data(eeglab, field, 'split = "by-recording"'),
        "eeglab-by-image-no-ids": eeglab_data(eeglab, field, 'split = "by-image"').replace(
            'image_regex = ""', 'image_regex = "img=(?P<image>.+)"'
        ),
        "eeglab-by-image-empty-regex": eeglab_data(eeglab, field, 'split = "by-image"'),
        "n170-by-recording-with-test": n170_data(sub02, 'split = "by-recording"'),
    }[case]
    config = write(tmp_path, data)
    if case == "n170-by-recording-with-test":
        config.write_text(config.read_text().replace("val_fraction = 0.3", "val_fraction = 0.3\ntest_fraction = 0.2"))
    with pytest.raises(ConfigError) as err:
        fit_run(config, out=tmp_path / "run", progress=False)
    message = str(err.value)
    assert str(config) in message and all(k in message for k in keys), message
    assert not (tmp_path / "run").exists()  # refused before anything was written or trained


def test_too_few_blocks_are_refused_naming_the_key(eeglab, tmp_path: Path) -> None:
    """The first 15 EEGLAB trials (blocks 2, 1, 2 of five trials): class '1' has one block, which cannot be on both
    sides; the default by-block split is refused, naming the key, the count and the way out."""
    import dataclasses

    from training.fit import cut_epochs
    from training.run_config import load_config
    from training.runs import _load_data, data_spec, plan_split

    path = write(tmp_path, eeglab_data(eeglab, 'label_field = "position"'))
    config = load_config(path)
    recordings, _ = _load_data(config)
    spec, prep = data_spec(config, recordings)
    data = cut_epochs(recordings, spec, prep, events=config.data.events, label_regex=config.data.rule().cut_regex,
                      image_regex=None)  # fmt: skip
    first = dataclasses.replace(data, X=data.X[:15], labels=data.labels[:15], groups=data.groups[:15],
                                markers=data.markers[:15], recording=data.recording[:15])  # fmt: skip
    assert first.labels == ["2"] * 5 + ["1"] * 5 + ["2"] * 5
    assert plan_split(data, config.data, config.train, str(path)).name == "by-block"  # all 80: 6 and 7 blocks
    with pytest.raises(ConfigError) as err:
        plan_split(first, config.data, config.train, str(path))
    message = str(err.value)
    for key in (str(path), "[data] split = 'by-block' (the default)", "class '1' has 1", "of 3 blocks", "recordings"):
        assert key in message, message


def test_a_run_split_by_trial_before_split_existed_is_not_resumed_or_evaluated_on_another(eeglab, tmp_path: Path):
    """A run from before ``[data] split`` (real recordings, no image ids: by trial) keeps its recorded split: resume
    and evaluate refuse to continue it on the new default (by block) instead of silently changing it."""
    from training.evaluate_run import evaluate_run

    rule = 'label_field = "position"'
    old = write(tmp_path, eeglab_data(eeglab, rule, 'split = "by-trial"'), "old")
    run = tmp_path / "run"
    fit_run(old, out=run, progress=False, stop_after=1)
    saved = run / "config.toml"  # as an old run saved it: no split key
    saved.write_text(saved.read_text().replace('split = "by-trial"\n', ""))
    new = write(tmp_path, eeglab_data(eeglab, rule), "new")
    with pytest.raises(ConfigError) as err:
        fit_run(new, resume=run, progress=False)
    assert "split by trial" in str(err.value) and "'by-block'" in str(err.value) and "new run" in str(err.value)

    fit_run(old, out=tmp_path / "done", progress=False)  # a finished by-trial run whose config lost the key
    saved = tmp_path / "done" / "config.toml"
    saved.write_text(saved.read_text().replace('split = "by-trial"\n', ""))
    with pytest.raises(ConfigError) as err:
        evaluate_run(tmp_path / "done", n_permutations=1000)
    assert "[data] split = 'by-block'" in str(err.value) and "split = 'by-trial'" in str(err.value)
    saved.write_text(saved.read_text().replace('image_regex = ""', 'image_regex = ""\nsplit = "by-trial"'))
    assert "leaky" in evaluate_run(tmp_path / "done", n_permutations=1000)["split"]  # evaluated as trained


def test_by_block_permutation_p_permutes_whole_blocks(eeglab, tmp_path: Path, monkeypatch) -> None:
    """A perfect validation prediction on 4 validation blocks: permuting single trials calls it p ≈ 0.001, but
    only C(4, 2) = 6 block labellings exist, so the honest (block) p cannot fall below about 1/6."""
    import numpy as np

    from training import fit, runs

    captured = {}
    real_prepare = runs.prepare_data

    def keep(*args, **kw):  # type: ignore[no-untyped-def]
        captured["rd"] = rd = real_prepare(*args, **kw)
        return rd

    real_predict = fit.predict_logits

    def perfect(model, X, *args, **kw):  # type: ignore[no-untyped-def]
        rd = captured["rd"]
        if not np.array_equal(X, rd.X[rd.val_idx]):  # not the final validation prediction
            return real_predict(model, X, *args, **kw)
        return np.eye(len(rd.classes), dtype=np.float32)[rd.y[rd.val_idx]] * 10

    monkeypatch.setattr(runs, "prepare_data", keep)
    monkeypatch.setattr(fit, "predict_logits", perfect)
    result = fit_run(write(tmp_path, eeglab_data(eeglab, 'label_field = "position"')), out=tmp_path / "run",
                     progress=False)  # fmt: skip
    m = result.metrics
    assert m["val_accuracy"] == 1.0 and m["split_info"]["groups"]["validation"] == 4
    assert m["permutation_unit"] == "block" and m["p_value_permutation_trials"] < 0.01
    assert m["p_value_permutation"] > 0.1  # 1 of 6 block labellings is as good as the observed one
    assert "blocks permuted" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize(("seed", "side"), [(0, "train"), (1, "validation")])
def test_a_class_left_on_one_side_is_refused_before_training(sub02, tmp_path: Path, seed: int, side: str) -> None:
    """Run 1 of sub-02 and a faces-only copy of run 2, split by recording: houses are in one recording, so whichever
    the seed holds out, one part has no house; refused before training, naming the key, the class, the side and
    the epochs per class on each side."""
    faces = faces_only(sub02[1], tmp_path)
    config = write(tmp_path, n170_data([sub02[0], faces], 'split = "by-recording"'), "n170")
    config.write_text(config.read_text().replace("seed = 0", f"seed = {seed}"))
    with pytest.raises(ConfigError) as err:
        fit_run(config, out=tmp_path / "run", progress=False)
    message = str(err.value)
    run1, only = class_counts_of([sub02[0], faces])
    assert only["house"] == 0 < only["face"] and run1["house"] > 0
    other = "validation" if side == "train" else "train"
    # the part without houses holds the faces-only recording; the other holds run 1
    per_side = {"train": only, "validation": run1} if side == "train" else {"train": run1, "validation": only}
    shown = "; ".join(f"{part} 'face' {c['face']}, 'house' {c['house']}" for part, c in per_side.items())
    for key in (str(config), "[data] split = 'by-recording' leaves a class out of a part",
                f"class 'house' is not in {side} (its epochs are all in {other} ({run1['house']}))",
                f"epochs per class: {shown})", "'house' is in only 1 recording(s) for 2 parts",
                "give more recordings that hold it", "split = 'by-block'"):  # fmt: skip
        assert key in message, message
    assert not (tmp_path / "run").exists()  # refused before anything was written or trained
