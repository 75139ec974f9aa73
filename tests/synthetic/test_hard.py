import csv

import numpy as np

from monai_wsseg.synthetic import HARD_PARAMS, make_hard_cohorts, second_lab
from monai_wsseg.synthetic.generator import render_slide
from monai_wsseg.synthetic.params import TISSUE_KINDS
from tests.conftest import load_script

BENIGN, TUMOR, LYMPH = (TISSUE_KINDS.index(k) for k in ("benign_epithelium", "tumor", "lymphoid"))


def test_hard_normal_slides_hold_tumor_coloured_benign_tissue():
    normal = render_slide(1024, 1024, tumor=False, seed=11, params=HARD_PARAMS, workers=1)
    tissue = normal.kinds > 0
    assert (normal.kinds == BENIGN).sum() > 0.1 * tissue.sum()
    assert (normal.kinds == LYMPH).sum() > 0.1 * tissue.sum()
    assert not (normal.kinds == TUMOR).any()
    # tumor slides hold some benign epithelium too: within one slide (one stain) it has the tumor's colour
    tumor = render_slide(1024, 1024, tumor=True, seed=12, params=HARD_PARAMS, workers=1)
    cell = tumor.mask_downsample
    pix = tumor.image.reshape(tumor.kinds.shape[0], cell, tumor.kinds.shape[1], cell, 3).mean(axis=(1, 3))
    assert (tumor.kinds == BENIGN).sum() > 20
    gap = np.abs(pix[tumor.kinds == TUMOR].mean(0) - pix[tumor.kinds == BENIGN].mean(0)).max()
    stroma = np.abs(pix[tumor.kinds == TUMOR].mean(0) - pix[tumor.kinds == 1].mean(0)).max()
    assert gap < 15 < stroma


def test_default_params_draw_no_benign_tissue():
    r = render_slide(512, 512, tumor=False, seed=3, workers=1)
    assert not (r.kinds == BENIGN).any()


def test_colour_cast_changes_slide_colour_between_slides():
    def glass_free_mean(params, seed):
        r = render_slide(512, 512, tumor=False, seed=seed, params=params, workers=1)
        return r.image[r.image.min(-1) < 200].mean(0)

    plain = HARD_PARAMS.__class__(**{**HARD_PARAMS.__dict__, "colour_cast": 0.0})
    cast_spread = np.std([glass_free_mean(HARD_PARAMS, s) for s in range(4)], axis=0).mean()
    plain_spread = np.std([glass_free_mean(plain, s) for s in range(4)], axis=0).mean()
    assert cast_spread > plain_spread


def test_second_lab_is_tinted_and_blurred():
    home = render_slide(512, 512, tumor=True, seed=5, params=HARD_PARAMS, workers=1)
    lab2 = render_slide(512, 512, tumor=True, seed=5, params=second_lab(), workers=1)
    glass = home.image.min(-1) > 225
    assert np.abs(lab2.image[glass].mean(0) - home.image[glass].mean(0)).max() > 4  # tinted glass

    def sharpness(img):
        g = img.astype(float).mean(-1)
        return np.abs(np.diff(g, axis=1)).mean()

    assert sharpness(lab2.image) < 0.8 * sharpness(home.image)
    assert np.array_equal(home.kinds, lab2.kinds)  # the same tissue


def test_make_hard_cohorts_layout(tmp_path):
    found = make_hard_cohorts(tmp_path, size=512, home_splits=(("train", 1, 1), ("test", 1, 1)),
                              lab2_splits=(("test", 1, 1),))
    home = list(csv.DictReader(open(found["home"])))
    lab2 = list(csv.DictReader(open(found["lab2"])))
    assert [(r["split"], r["label"]) for r in home] == [("train", "1"), ("test", "1"), ("train", "0"), ("test", "0")]
    assert {r["location"] for r in lab2} == {"lab2"} and {r["split"] for r in lab2} == {"test"}
    for r in home + lab2:
        assert (found["home"].parent.parent / r["location"] / r["slide"]).is_file()
        assert bool(r["mask"]) == (r["label"] == "1")
    before = (tmp_path / "home" / home[0]["slide"]).stat().st_mtime_ns
    make_hard_cohorts(tmp_path, size=512, home_splits=(("train", 1, 1), ("test", 1, 1)), lab2_splits=(("test", 1, 1),))
    assert (tmp_path / "home" / home[0]["slide"]).stat().st_mtime_ns == before  # kept on rerun


def test_hard_cohort_defeats_a_colour_threshold(tmp_path):
    found = make_hard_cohorts(tmp_path, size=2048, home_splits=(("test", 3, 3),), lab2_splits=(("test", 1, 1),))
    baseline = load_script("colour_baseline")
    summary = baseline.main(["--dataset_dir", str(found["home"].parent), "--split", "test"])
    assert summary["best_auc"] <= 0.80


def test_tissue_detection_holds_on_cast_and_second_lab_slides(tmp_path):
    """Grey-green casts and a second lab's bluer haematoxylin are neither glass nor marker ink."""
    from monai_wsseg.synthetic.generator import _slide_layout
    from monai_wsseg.wsi.slide import open_slide
    from monai_wsseg.wsi.tissue import compute_tissue_mask, tissue_on_grid

    found = make_hard_cohorts(tmp_path, size=2048, home_splits=(("test", 3, 2),), lab2_splits=(("test", 2, 1),))
    ious = []
    for name, params, seed in (("home", HARD_PARAMS, 1000), ("lab2", second_lab(), 1001)):
        for i, row in enumerate(csv.DictReader(open(found[name]))):
            with open_slide(found[name].parent / row["slide"]) as slide:
                cells = tissue_on_grid(compute_tissue_mask(slide, mpp=8.0), 32, (64, 64))
            layout, _, _ = _slide_layout(2048, 2048, row["label"] == "1", seed * 100_003 + i, 0.5, params,
                                         (0.1, 0.4), "t")
            yy, xx = np.mgrid[0:64, 0:64]
            truth = layout.kinds_at(xx * 32 + 16.0, yy * 32 + 16.0) > 0
            ious.append((truth & cells).sum() / (truth | cells).sum())
    # Before the stain-hue rules the bluer haematoxylin was taken for blue marker (IoU 0.49 on one slide);
    # that slide's pale eosin still falls below the saturation threshold in places (0.73 here).
    assert min(ious) >= 0.70 and np.median(ious) >= 0.95, ious
