"""Training images: patches of the photographs bundled with scikit-image, and the caption ->
subject parser the model and the compliance reward share."""

import numpy as np
import pytest

from ric.image.data import (
    SKIMAGE_PHOTOS,
    SUBJECTS,
    make_patches,
    skimage_data_dir,
    subject_index,
    subject_patches,
    vivid_edit,
)


def test_patches_from_bundled_photos():
    a, wa = make_patches(6, 16, seed=3)
    b, wb = make_patches(6, 16, seed=3)
    assert a.shape == (6, 16, 16, 3) and a.dtype == np.uint8 and wa.shape == (6,)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a, make_patches(6, 16, seed=4)[0])
    # Every listed photograph is a file inside the skimage package (no pooch download).
    for file, _ in SKIMAGE_PHOTOS.values():
        assert (skimage_data_dir() / file).is_file(), file
    assert "astronaut" in SKIMAGE_PHOTOS and "brain" not in SKIMAGE_PHOTOS
    with pytest.raises(ValueError, match="not a bundled skimage photograph"):
        make_patches(1, 16, names=["brain"])


def test_every_subject_is_a_bundled_photo():
    for subject, (photo, _aliases) in SUBJECTS.items():
        assert photo in SKIMAGE_PHOTOS, subject
        assert subject_index(subject, list(SUBJECTS)) == list(SUBJECTS).index(subject)


def test_subject_patches_are_labelled_and_balanced():
    patches, labels = subject_patches(400, 8, 0, ["cat", "moon"], min_crop=0.5)
    assert patches.shape == (400, 8, 8, 3) and set(labels) == {0, 1}
    assert abs(labels.mean() - 0.5) < 0.1  # subjects drawn uniformly
    # The moon photograph is grey, the cat is not: the labels follow the pixels.
    spread = patches.astype(int).std(axis=3).mean(axis=(1, 2))
    assert spread[labels == 1].max() < 1 < spread[labels == 0].mean()


def test_make_patches_reports_crop_sides():
    a, wa = make_patches(20, 16, seed=5, min_crop=0.25)
    b, wb, sides = make_patches(20, 16, seed=5, min_crop=0.25, sides=True)
    np.testing.assert_array_equal(a, b)  # asking for the sides changes nothing else
    assert sides.shape == (20,) and np.all((sides >= 0.2) & (sides <= 1.0))


def test_vivid_edit_punches_up_a_share_of_the_patches():
    from ric.image.rewards import colorfulness

    patches, _ = subject_patches(200, 16, 0, ["cat", "coffee"], min_crop=0.5)
    same, s0 = vivid_edit(patches, 0.0, 3.0, seed=1)
    np.testing.assert_array_equal(same, patches)
    assert np.all(s0 == 1.0)
    edited, s = vivid_edit(patches, 0.5, 3.0, seed=1)
    again, _ = vivid_edit(patches, 0.5, 3.0, seed=1)
    np.testing.assert_array_equal(edited, again)  # deterministic in the seed
    hit = s > 1.0
    assert 0.35 < hit.mean() < 0.65 and s.max() <= 3.0
    np.testing.assert_array_equal(edited[~hit], patches[~hit])
    colour = colorfulness()
    before = colour([""] * hit.sum(), list(patches[hit]))
    after = colour([""] * hit.sum(), list(edited[hit]))
    assert after.mean() > 1.3 * before.mean()
    with pytest.raises(ValueError, match="share in"):
        vivid_edit(patches, 1.5, 3.0, seed=1)


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("cat", 1),
        ("A photo of a CAT, please", 1),
        ("kitten", 1),  # an alias
        ("the cameraman", 3),
        ("a camera", 3),  # alias of cameraman
        ("cup of coffee", 2),
        ("category theory", None),  # whole words only
        ("a dog", None),
        ("", None),
    ],
)
def test_subject_index(caption, expected):
    assert subject_index(caption, ["astronaut", "cat", "coffee", "cameraman"]) == expected
