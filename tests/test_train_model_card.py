"""The one model-card builder: YAML metadata (base models, dataset, model-index) and body round-trip."""

from huggingface_hub import EvalResult, ModelCard

from sound_of_story.cards import build_model_card


def test_model_card_round_trips_metadata_and_results(tmp_path):
    results = [
        EvalResult(
            task_type="audio-retrieval",
            dataset_type="sos",
            dataset_name="SoS",
            dataset_split="test",
            metric_type="recall@1",
            metric_name="A2V R@1",
            metric_value=12.5,
        ),
    ]
    card = build_model_card(
        library_name="transformers",
        base_models=["openai/clip-vit-base-patch32", "MIT/ast"],
        dataset="user/sos",
        pipeline_tag="feature-extraction",
        tags=["retrieval"],
        command="accelerate launch train/retrieval.py --x 1",
        training_settings={"learning_rate": 1e-4, "pairs": ["audio", "video"]},
        eval_results=results,
        model_name="sos-retrieval",
        description="A test model.",
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.library_name == "transformers"
    assert loaded.data.base_model == ["openai/clip-vit-base-patch32", "MIT/ast"]
    assert loaded.data.datasets == ["user/sos"]
    assert loaded.data.tags == ["sound-of-story", "retrieval"]
    assert loaded.data.eval_results[0].metric_value == 12.5
    assert loaded.data.eval_results[0].dataset_split == "test"
    assert loaded.data.model_name == "sos-retrieval"
    assert "accelerate launch train/retrieval.py --x 1" in loaded.text
    assert "| `learning_rate` | `0.0001` |" in loaded.text
    assert "A test model." in loaded.text


def test_model_card_minimal_and_bad_library():
    card = build_model_card(library_name="diffusers", base_models=[])
    assert card.data.library_name == "diffusers"
    assert card.data.eval_results is None
    import pytest

    with pytest.raises(ValueError, match="library_name"):
        build_model_card(library_name="keras", base_models=[])
