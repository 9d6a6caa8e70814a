"""The app's Image tab around a tiny embedded image model trained here for 2 steps (16 px, 2
sampling steps), driven through gradio_client like any user script; the UI callbacks are also
called directly, as the browser would."""

import inspect
import json
import shutil

import gradio as gr
import numpy as np
import pytest
from image_helpers import SUBJECTS, tiny_recipe
from PIL import Image
from test_app import free_port, load_app_module

import ric.app.image as app_image
from ric.image.sampling import SteerableImageModel
from ric.image.training import train_image_model
from ric.validation import ENDPOINTS

app = load_app_module()
NAMES = ["compliance", "aesthetic_composite"]


def image_front(label="RiC (image)", base=False):
    pts = [[-0.5, -0.5]] if base else [[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0]]
    weights = [None] if base else [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    return {
        "label": label,
        "reward_names": NAMES,
        "reference_point": [-2.0, -2.0],
        "hypervolume": 2.5,
        "points": [{"weights": w, "achieved": p} for w, p in zip(weights, pts, strict=True)],
    }


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("image")
    return train_image_model(tiny_recipe(out, max_steps=2, save_steps=2))


@pytest.fixture(scope="module")
def image(image_dir):
    return SteerableImageModel.load(image_dir, device="cpu")


@pytest.fixture(scope="module")
def demo(steer_text, image):
    fronts = [image_front(), image_front("unconditioned", base=True)]
    return app.build_demo(steer_text, image_model=image, image_fronts=fronts, image_label="tiny")


@pytest.fixture(scope="module")
def steer_text(tiny_adapter_dir):
    from ric.steering import SteerableModel

    return SteerableModel.load(tiny_adapter_dir, dtype="float32")


@pytest.fixture(scope="module")
def client(demo):
    from gradio_client import Client

    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def callback(demo, name):
    fns = {f.fn for f in demo.fns.values() if f.fn is not None and f.fn.__name__ == name}
    assert len(fns) == 1, name
    return fns.pop()


# --- /generate_image ---


def test_api_lists_generate_image(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert set(info["named_endpoints"]) == {"/generate", "/map_preferences", "/generate_image"}
    params = info["named_endpoints"]["/generate_image"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["weights", "method", "n", "seed", "prompt"]
    # gradio_client may leave the prompt out: it sends "", the model's default.
    assert params[-1]["parameter_has_default"] and params[-1]["parameter_default"] == ""


def test_generate_image_parameters_match_the_validator(demo):
    fns = {f.api_name: f.fn for f in demo.fns.values() if f.api_name in ENDPOINTS}
    params = tuple(inspect.signature(fns["generate_image"]).parameters)
    assert params == ENDPOINTS["generate_image"][0]


def test_generate_image(client, image):
    gallery, desired, achieved = client.predict(
        [0.3, 0.7], "quantile", 3, 5, api_name="/generate_image"
    )
    assert len(gallery) == 3
    for item in gallery:
        with Image.open(item["image"]) as im:
            assert im.size == (16, 16) and im.mode == "RGB"  # the model's own resolution
        assert item["caption"].startswith("#") and "compliance" in item["caption"]
    assert desired == pytest.approx(image.desired([0.3, 0.7], "quantile").tolist())
    # The same request in-process gives the same images and rewards (seeded).
    images, _, direct = image.generate(
        [0.3, 0.7], n=3, seed=5, method="quantile", prompt=SUBJECTS[0]
    )
    assert np.asarray(achieved) == pytest.approx(direct)
    with Image.open(gallery[0]["image"]) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), np.asarray(images[0]))


def test_generate_image_defaults_and_json_weights(client, image):
    gallery, desired, achieved = client.predict("[1, 3]", api_name="/generate_image")
    assert len(gallery) == len(achieved) == 4 and len(achieved[0]) == 2
    assert desired == pytest.approx(image.desired([0.25, 0.75]).tolist())  # model's mapping
    # No prompt: the first subject.
    _, _, direct = image.generate([0.25, 0.75], n=4, seed=0, prompt=SUBJECTS[0])
    assert np.asarray(achieved) == pytest.approx(direct)


def test_generate_image_with_a_prompt(client, image):
    gallery, _, achieved = client.predict(
        [0.5, 0.5], "quantile", 2, 3, " a full moon ", api_name="/generate_image"
    )
    images, _, direct = image.generate([0.5, 0.5], n=2, seed=3, method="quantile", prompt="moon")
    assert np.asarray(achieved) == pytest.approx(direct)
    with Image.open(gallery[1]["image"]) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), np.asarray(images[1]))
    # An empty prompt is the model's default, like no prompt at all.
    _, _, default = client.predict([0.5, 0.5], "quantile", 2, 3, "", api_name="/generate_image")
    _, _, direct = image.generate([0.5, 0.5], n=2, seed=3, method="quantile", prompt="cat")
    assert np.asarray(default) == pytest.approx(direct)


@pytest.mark.parametrize(
    "weights, kwargs, message",
    [
        ([0, 0], {}, "all zero"),
        ([-1, 2], {}, "non-negative"),
        ([0.2, 0.3, 0.5], {}, "expected 2 weights"),
        ("not json", {}, "JSON list"),
        ([0.5, 0.5], {"method": "magic"}, "unknown mapping method"),
        ([0.5, 0.5], {"n": 0}, r"n \(number of images\) must be a whole number in \[1, 8\]"),
        ([0.5, 0.5], {"n": 9}, r"in \[1, 8\]"),
        ([0.5, 0.5], {"seed": -1}, "seed must be"),
        (
            [0.5, 0.5],
            {"prompt": "a dog"},
            r"prompt must name one of this model's subjects \(cat, moon\) or be empty: the "
            "text 'a dog' names none of them",
        ),
        ([0.5, 0.5], {"prompt": "cat " * 60}, "prompt must be at most 200 characters, got 239"),
        ([0.5, 0.5], {"prompt": 5}, "prompt must be text, got int 5"),
        ([0.5, 0.5], {"prompt": ["cat"]}, "prompt must be text, got list"),
    ],
)
def test_generate_image_bad_input_is_a_clear_error(client, weights, kwargs, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message) as err:
        client.predict(weights, **kwargs, api_name="/generate_image")
    assert "Traceback" not in str(err.value)


def test_prompt_box_offers_the_subjects(demo):
    config = demo.get_config_file()
    boxes = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "img-prompt"]
    assert len(boxes) == 1 and boxes[0]["props"]["value"] == SUBJECTS[0]
    text = json.dumps(config, default=str)
    assert "name one of the subjects: cat, moon" in text and "**subjects:** cat, moon" in text
    assert "compliance classifier" in text
    assert "on the crops the image model learned from" in text  # its classifier_min_crop


def test_image_model_has_its_own_queue_slot(demo):
    fns = {f.name: f for f in demo.fns.values() if f.fn is not None}
    for name in ("generate_image_api", "generate_images"):
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("image_model", 1)
    assert fns["generate_api"].concurrency_id == "model"


# --- UI callbacks ---


def test_generate_images_shows_gallery_table_and_front(demo, image):
    generate = callback(demo, "generate_images")
    gallery, rows, table, fig, generations = generate(0.2, 0.8, "quantile", 2, 1, "cat", [])
    assert len(gallery) == 2 and gallery[0][0].size == (128, 128)  # enlarged for display
    assert [r[0] for r in rows] == ["desired", "image 1", "image 2", "mean", "mean - desired"]
    desired = image.desired([0.2, 0.8], "quantile")
    assert rows[0][1:] == pytest.approx(desired.tolist(), abs=1e-3)
    assert rows[3][1:] == pytest.approx(generations[0]["achieved"], abs=1e-3)
    assert "last mean" in table
    names = [t.name for t in fig.data]
    assert names[:2] == ["RiC (image) front, HV 2.500", "unconditioned, HV 2.500"]
    assert names[-2:] == ["desired", "generations (1)"]
    # A second generation adds a second point to the trail.
    *_, fig, generations = generate(0.9, 0.1, "quantile", 1, 1, "moon", generations)
    assert len(generations) == 2 and [t.name for t in fig.data][-1] == "generations (2)"


def test_generate_images_bad_input_is_a_gr_error(demo):
    generate = callback(demo, "generate_images")
    with pytest.raises(gr.Error, match="all zero"):
        generate(0.0, 0.0, "quantile", 2, 0, "cat", [])
    # The prompt box and /generate_image share the check (ric.validation.check_image_prompt).
    with pytest.raises(
        gr.Error, match=r"prompt must name one of this model's subjects \(cat, moon"
    ):
        generate(0.5, 0.5, "quantile", 2, 0, "a dog", [])
    with pytest.raises(gr.Error, match="at most 200"):
        generate(0.5, 0.5, "quantile", 2, 0, "cat " * 60, [])


def test_image_slider_rebalances_and_updates_desired(demo, image):
    out = callback(demo, "image_slider_0_moved")(0.8, 0.5, "quantile", [])
    assert out[1] == pytest.approx(0.2)
    table, fig = out[-2:]
    assert f"{image.desired([0.8, 0.2])[0]:+.2f}" in table
    assert "desired" in [t.name for t in fig.data]


def test_clear_images(demo):
    gallery, rows, table, fig, generations = callback(demo, "clear_images")(0.5, 0.5, "quantile")
    assert gallery == rows == generations == [] and "last mean" not in table


# --- without an image model ---


def test_placeholder_without_image_model(steer_text):
    demo = app.build_demo(steer_text)
    config = json.dumps(demo.get_config_file(), default=str)
    assert "has not been trained and shipped yet" in config
    assert "python train/train_diffusion.py --config train/recipes/cpu_image.yaml" in config
    names = {d.get("api_name") for d in demo.get_config_file()["dependencies"]}
    assert "generate_image" not in names


def test_load_image_model(image_dir, tmp_path):
    model, label = app_image.load_image_model(image_dir)
    assert model.reward_names == NAMES and str(image_dir) in label
    none, note = app_image.load_image_model(tmp_path / "missing")
    assert none is None and "does not exist" in note
    (tmp_path / "broken").mkdir()
    none, note = app_image.load_image_model(tmp_path / "broken")
    assert none is None and "Cannot load the image model" in note and "cpu_image.yaml" in note


def test_check_image_request():
    assert app_image.check_image_request(3.0, None) == (3, 0)
    for n, seed in [(2.5, 0), (True, 0), ("4", 0), (1, 2**32)]:
        with pytest.raises(ValueError, match="whole number"):
            app_image.check_image_request(n, seed)


def test_image_setup_defaults_to_the_shipped_model_and_fronts(image_dir, tmp_path, monkeypatch):
    shipped = tmp_path / "assets" / "image"
    monkeypatch.setattr(app_image, "DEFAULT_IMAGE_MODEL", shipped / "model")
    monkeypatch.setattr(app_image, "IMAGE_FRONT", shipped / "front.json")
    monkeypatch.setattr(app_image, "IMAGE_BASE_FRONT", shipped / "base_front.json")
    image, note, fronts = app_image.image_setup(None)
    assert image is None and "has not been trained and shipped yet" in note and fronts == []

    shutil.copytree(image_dir, shipped / "model")
    (shipped / "front.json").write_text(json.dumps(image_front()))
    image, label, fronts = app_image.image_setup(None)
    assert image.reward_names == NAMES and "assets/image/model" in label
    assert [f["label"] for f in fronts] == ["RiC (image)"]  # base_front.json is absent
    # Another folder: its own model, without the shipped model's fronts.
    image, label, fronts = app_image.image_setup(str(image_dir))
    assert image is not None and str(image_dir) in label and fronts == []
