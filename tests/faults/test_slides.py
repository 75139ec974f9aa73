"""Bad slides: corrupted tiles inside one slide, and every way a whole slide can be unusable."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from monai_wsseg.inference.cohort import CohortError, run_cohort
from monai_wsseg.inference.report import read_slide_report, unread_cells
from monai_wsseg.wsi.slide import open_slide
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import smooth_rgb
from tests.faults.conftest import as_unprivileged, assert_no_partial, expect_clear, expect_handled
from tests.inference.test_cohort import TinyFCN, inferer

TILE = 256  # TIFF tile edge of the test slides, pixels


def corrupt_tiles(path: Path, tiles: list[tuple[int, int]], page: int = 0) -> None:
    """Overwrite the JPEG header of tiles ``(row, column)`` of one TIFF page, so they cannot be decoded."""
    with tifffile.TiffFile(path) as tf:
        p = tf.pages[page]
        across = -(-p.imagewidth // p.tilewidth)
        offsets = [p.dataoffsets[r * across + c] for r, c in tiles]
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset)
            f.write(b"\0" * 64)


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> dict[str, Path]:
    """One good slide and one of every kind of bad slide."""
    d = tmp_path_factory.mktemp("bad_slides")
    good = write_pyramidal_tiff(d / "good.tif", smooth_rgb(768, 2048, seed=1), 0.5, tile_size=TILE, min_level_size=256)
    corrupted = write_pyramidal_tiff(d / "corrupted.tif", smooth_rgb(768, 2048, seed=2), 0.5, tile_size=TILE,
                                     min_level_size=256)
    corrupt_tiles(corrupted, [(1, 4)])
    lowres = write_pyramidal_tiff(d / "bad_lowres.tif", smooth_rgb(768, 2048, seed=3), 0.5, tile_size=TILE,
                                  min_level_size=256)
    with tifffile.TiffFile(lowres) as tf:
        last = len(tf.pages) - 1
    corrupt_tiles(lowres, [(0, 0)], page=last)  # the level the tissue mask is read from
    data = good.read_bytes()
    (d / "truncated.svs").write_bytes(data[: len(data) // 2])
    (d / "renamed_png.svs").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (d / "zero.svs").write_bytes(b"")
    (d / "folder.svs").mkdir()
    tiny = write_pyramidal_tiff(d / "tiny.tif", smooth_rgb(100, 120, seed=4), 0.5)  # < one 256 px tile
    blank = write_pyramidal_tiff(d / "blank.tif", np.full((768, 1024, 3), 243, np.uint8), 0.5)
    tifffile.imwrite(d / "no_mpp.tif", smooth_rgb(512, 512, seed=5), tile=(256, 256), photometric="rgb")
    return {"good": good, "corrupted": corrupted, "lowres": lowres, "tiny": tiny, "blank": blank,
            **{p.stem: p for p in d.glob("*.svs")}, "no_mpp": d / "no_mpp.tif",
            "missing": d / "missing.svs"}


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("truncated", "truncated file"),
        ("renamed_png", "not a readable TIFF slide"),
        ("zero", "empty file (0 bytes)"),
        ("folder", "is a folder, not a slide file"),
        ("missing", "no such slide file"),
        ("no_mpp", "records no microns per pixel; pass mpp="),
    ],
)
def test_an_unusable_slide_is_named_with_its_problem(slides, name, problem):
    expect_clear(f"slide: {name}", lambda: open_slide(slides[name]), names=str(slides[name]), match=problem)


def test_an_unreadable_slide_file_or_folder_is_named(slides, public_tmp):
    locked = public_tmp / "locked.tif"
    locked.write_bytes(slides["good"].read_bytes())
    locked.chmod(0o000)
    private = public_tmp / "private"
    private.mkdir(mode=0o700)
    hidden = private / "slide.tif"
    hidden.write_bytes(slides["good"].read_bytes())
    for case, path, problem in [("slide: file permission denied", locked, "not readable (permission denied)"),
                                ("slide: folder permission denied", hidden, "permission denied on a folder")]:
        found = as_unprivileged(lambda p=path: open_slide(p, backend="tifffile"))
        assert found is not None, f"an unprivileged user opened {path}"
        kind, message, ours = found
        clear = ours and kind == "SlideReadError" and message.startswith(str(path)) and problem in message
        expect_handled(case, clear, f"{kind}: {message}")


def test_corrupted_tiles_become_no_data_and_are_reported(slides, tmp_path):
    net = TinyFCN()
    with open_slide(slides["corrupted"]) as slide:
        smap = inferer(net)(slide)
        plan = inferer(net).plan(slide)
    nan = np.isnan(smap.probabilities[0])
    planned = np.zeros_like(nan)
    for cx, cy in plan.cells.tolist():
        planned[cy : cy + plan.tile_cells, cx : cx + plan.tile_cells] = True
    assert smap.unread and smap.unread_tiles
    # the bad tile (level-0 x 1024..1280, y 256..512) lies in a no-data region, and most of the map is computed
    d = smap.downsample
    assert nan[256 // d : 512 // d, 1024 // d : 1280 // d].all()
    assert 0.1 < (nan & planned).sum() / planned.sum() < 0.6  # one bad tile costs the tiles around it, no more
    result = run_cohort(inferer(net), [slides["corrupted"]], tmp_path / "out")
    assert result.done == [str(slides["corrupted"])] and not result.failed
    report = read_slide_report(tmp_path / "out" / "corrupted.json")
    cells = unread_cells(report, report["downsample"], nan.shape)
    assert np.array_equal(cells, nan & planned)  # the report names exactly the tiles that were not computed
    assert report["unread_windows"] == len(smap.unread) and report["nodata_cells"] == int(nan.sum())
    assert (smap.probabilities[0][planned & ~nan] >= 0).all()
    tiff = tifffile.imread(tmp_path / "out" / "corrupted.tif")
    assert (tiff[cells] == 0).all() and (tiff[~cells] > 0).any()  # stored as 0: only the report tells them apart
    assert_no_partial("corrupted tiles", tmp_path / "out")
    expect_handled("slide: corrupted JPEG tiles", bool(report["unread_regions"]), str(report))


def test_stored_maps_leave_unread_tiles_out_of_the_evaluation(slides, tmp_path):
    from monai_wsseg.datasets.manifest import SlideRecord
    from monai_wsseg.mil.evaluation import TumorMapEvaluation
    from monai_wsseg.wsi.tissue import compute_tissue_mask

    net = TinyFCN()
    maps = tmp_path / "maps"
    run_cohort(inferer(net), [slides["corrupted"]], maps)
    record = SlideRecord(slides["corrupted"], 0, "test", None, "c", None)
    evaluation = TumorMapEvaluation(inferer(net), [record], tmp_path / "ev", maps_dir=maps, progress=False)
    with open_slide(slides["corrupted"]) as slide:
        scores, _ = evaluation._stored_map(slide, compute_tissue_mask(slide, mpp=8.0))
        smap = inferer(net)(slide)
    assert np.array_equal(np.isnan(scores), np.isnan(smap.probabilities[0]))


def test_a_cohort_of_bad_slides_lists_each_and_finishes_the_good_ones(slides, tmp_path):
    names = ["good", "truncated", "renamed_png", "zero", "no_mpp", "lowres", "tiny", "blank"]
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exc = expect_clear("cohort of bad slides", lambda: run_cohort(inferer(TinyFCN()), [slides[n] for n in names],
                                                                       out),
                           names="5 of 8 slides failed", match="truncated file")
    failed = {Path(line.split(": ")[0].strip()).stem: line for line in str(exc).splitlines()[1:]}
    assert sorted(failed) == ["bad_lowres", "no_mpp", "renamed_png", "truncated", "zero"]
    assert "cannot read region" in failed["bad_lowres"]  # a broken tissue-mask level fails the slide, named
    assert "empty file" in failed["zero"] and "not a readable TIFF" in failed["renamed_png"]
    for n in ("good", "tiny", "blank"):
        assert (out / f"{slides[n].stem}.json").is_file()
    assert_no_partial("cohort of bad slides", out)
    tiny = read_slide_report(out / "tiny.json")
    assert tiny["computed_cells"] > 0 and tiny["nodata_cells"] == 0  # smaller than a tile: padded, computed
    expect_handled("slide smaller than one tile", tiny["computed_cells"] > 0, str(tiny))
    blank = read_slide_report(out / "blank.json")
    said = any("no tissue found" in str(w.message) and "blank.tif" in str(w.message) for w in caught)
    expect_handled("slide with no tissue", blank["no_tissue"] and said, str(blank))
    assert isinstance(exc, CohortError)


@pytest.fixture(scope="module")
def dicom_cases(slides, tmp_path_factory) -> dict[str, Path]:
    """DICOM inputs a user may meet: a file without ImageType (pathml-style), a folder of two series,
    a folder holding only non-DICOM files."""
    pytest.importorskip("openslide")
    wsidicomizer = pytest.importorskip("wsidicomizer")
    import pydicom

    d = tmp_path_factory.mktemp("bad_dicom")
    mixed = d / "two_series"
    mixed.mkdir()
    for tag, source in (("a", slides["good"]), ("b", slides["tiny"])):
        wsidicomizer.WsiDicomizer.convert(str(source), str(d / tag))
        for f in (d / tag).glob("*.dcm"):
            shutil.copy(f, mixed / f"{tag}_{f.name}")
    ds = pydicom.dcmread(sorted((d / "a").glob("*.dcm"))[0])
    del ds.ImageType
    ds.save_as(d / "no_image_type.dcm")
    (d / "not_dicom.dcm").write_bytes(b"\0" * 300)
    return {"no_image_type": d / "no_image_type.dcm", "two_series": mixed, "series": d / "a",
            "not_dicom": d / "not_dicom.dcm"}


@pytest.mark.parametrize(
    ("name", "backend", "problem"),
    [
        ("no_image_type", "auto", "DICOM file without ImageType (0008,0008)"),
        ("two_series", "auto", "folder holds 2 DICOM series"),
        ("series", "tifffile", "reads through OpenSlide 4; the tifffile backend cannot read it"),
        ("not_dicom", "auto", "not a readable DICOM file"),
    ],
)
def test_an_unusable_dicom_slide_is_named_with_its_problem(dicom_cases, name, backend, problem):
    path = dicom_cases[name]
    expect_clear(f"dicom: {name}", lambda: open_slide(path, backend=backend), names=str(path), match=problem)


def test_a_cohort_with_bad_dicom_lists_them_and_maps_the_good_series(dicom_cases, tmp_path):
    cohort = [dicom_cases["series"], dicom_cases["no_image_type"], dicom_cases["two_series"]]
    out = tmp_path / "out"
    exc = expect_clear("dicom: cohort with two bad series",
                       lambda: run_cohort(inferer(TinyFCN()), cohort, out),
                       names="2 of 3 slides failed", match="without ImageType")
    assert "two_series: folder holds 2 DICOM series" in str(exc)
    assert (out / "a.tif").exists()
    assert_no_partial("dicom cohort", out)


def test_a_bad_roi_fails_its_slide_naming_the_file(slides, tmp_path):
    from monai_wsseg.datasets.manifest import SlideRecord

    outside = tmp_path / "outside.geojson"
    ring = [[5000, 5000], [6000, 5000], [6000, 6000], [5000, 5000]]
    outside.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}}))
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [')
    cohort = [SlideRecord(slides["good"], None, None, None, "a", roi=outside),
              SlideRecord(slides["blank"], None, None, None, "b", roi=broken)]
    out = tmp_path / "out"
    exc = expect_clear("roi: outside the slide / not JSON", lambda: run_cohort(inferer(TinyFCN()), cohort, out),
                       names="2 of 2 slides failed", match="outside.geojson: feature 0")
    assert "broken.geojson: not JSON" in str(exc)
    assert_no_partial("bad roi", out)
