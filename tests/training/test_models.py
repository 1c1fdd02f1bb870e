"""`bci-train models` end to end on a tiny recipe; the bench of an exported student."""

from __future__ import annotations

from bci_stream.card import read_card
from training.bench import inference_speed
from training.models import DEMO, RECIPES, DemoData, SynthRecipe, build


def test_build_chain_on_a_tiny_recipe(tmp_path):
    recipe = SynthRecipe(
        file="tiny.onnx",
        name="tiny",
        n_classes=3,
        session_seeds=(1,),
        session_seconds=15.0,
        synth={"images_per_class": 3},
        epochs=1,
        hidden=8,
        demo=DemoData(seconds=8.0, seed=7, classes=3, subject=1),
    )
    metrics = build(recipe, tmp_path)
    card = read_card(tmp_path / "tiny.onnx")
    assert card.name == "tiny" and len(card.output.classes) == 3 and card.input.n_times == 440
    assert card.provenance["split"] == "by-image" and "synthetic sessions" in str(card.provenance["data"])
    assert metrics["demo_n"] >= 10 and 0.0 <= metrics["demo_accuracy"] <= 1.0
    assert (
        metrics["demo_command"] == "bci-train synth --out build/demo.fif --seconds 8 --seed 7 --classes 3 --subject 1"
    )
    speed = inference_speed(tmp_path / "tiny.onnx", runs=3, warmup=1, threads=1)
    assert speed["onnxruntime_ms"] > 0 and speed["torch_ms"] > 0 and speed["input_shape"] == [1, 440, 128]


def test_shipped_recipe_is_the_demo():
    recipe = RECIPES[0]
    assert recipe.file == "cogninet-synth.onnx" and recipe.demo == DEMO
    assert DEMO.seed not in recipe.session_seeds  # the demo recording is never trained on
    assert DEMO.classes == recipe.n_classes and DEMO.subject in recipe.subjects
