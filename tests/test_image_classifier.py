"""The subject classifier behind `compliance`: trains on held-out patches, round-trips through
safetensors, and learns an easy split (a grey subject against a colour one)."""

import numpy as np
import torch

from ric.artifacts import read_json
from ric.image.classifier import SubjectClassifier, augment, train_classifier

torch.set_num_threads(1)


def test_trains_reports_and_round_trips(tmp_path):
    clf, report = train_classifier(["cat", "moon"], size=8, n_patches=256, steps=40, seed=0)
    # Cat (colour) against moon (grey) is easy: far above chance after 40 steps.
    assert report["chance"] == 0.5 and report["test_accuracy"] >= 0.9
    assert set(report["test_accuracy_per_subject"]) == {"cat", "moon"}
    clf.save(tmp_path / "clf", report)
    again = SubjectClassifier.load(tmp_path / "clf")
    assert again.subjects == ["cat", "moon"] and again.size == 8
    assert (
        read_json(tmp_path / "clf" / "classifier.json")["test_accuracy"] == report["test_accuracy"]
    )
    images = [np.full((16, 16, 3), v, np.uint8) for v in (0, 128)]  # resized to 8 px inside
    p = clf.probabilities(images)
    assert p.shape == (2, 2)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(again.probabilities(images), p, rtol=1e-5, atol=1e-6)


def test_augment_stays_in_range_and_keeps_shape():
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert not torch.equal(x, y)
