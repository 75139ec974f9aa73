"""DICOM WSI series: a folder (or any file of it) is one slide, read through OpenSlide 4, found by discovery,
mapped like the TIFF it was converted from."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from monai_wsseg.datasets.discovery import find_slide_files
from monai_wsseg.inference.cohort import cohort_slides, run_cohort
from monai_wsseg.wsi.dicom import find_dicom_slides, is_dicom
from monai_wsseg.wsi.slide import Slide, SlideReadError
from tests.inference.test_cohort import TinyFCN, inferer, make_slides

pytest.importorskip("openslide")
wsidicomizer = pytest.importorskip("wsidicomizer")


def dicomize(tiff: Path, folder: Path) -> Path:
    """``tiff`` written as a DICOM WSI series into ``folder`` (JPEG tiles re-encoded at quality 95)."""
    from wsidicom.codec import JpegSettings

    wsidicomizer.WsiDicomizer.convert(str(tiff), str(folder), encoding=JpegSettings(quality=95))
    return folder


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    """A cohort folder: one TIFF slide, one DICOM series folder made from a second TIFF kept outside."""
    root = tmp_path_factory.mktemp("dicom")
    tiffs = make_slides(root / "tiffs", 2)
    folder = root / "cohort"
    folder.mkdir()
    shutil.copy(tiffs[0], folder / "slide0.tif")
    series = dicomize(tiffs[1], folder / "slide1")
    return {"root": root, "cohort": folder, "series": series, "tiff": tiffs[1]}


def test_a_series_folder_and_each_of_its_files_open_as_the_slide(cohort):
    tiff = Slide(cohort["tiff"], backend="openslide")
    files = sorted(cohort["series"].glob("*.dcm"))
    assert len(files) >= 2 and all(is_dicom(f) for f in files)
    for path in (cohort["series"], files[0], files[-1]):
        s = Slide(path)
        assert s.backend == "openslide" and s.path == path
        assert s.dimensions == tiff.dimensions and s.mpp == pytest.approx(tiff.mpp)
        assert s.level_dimensions == tiff.level_dimensions
        a = s.read_region((500, 100), (256, 256), 0.5).astype(float)
        b = tiff.read_region((500, 100), (256, 256), 0.5).astype(float)
        assert np.abs(a - b).mean() < 4, "pixels differ by more than a re-encoded JPEG"


def test_discovery_finds_series_folders_beside_slide_files(cohort):
    assert find_slide_files(cohort["cohort"]) == [cohort["cohort"] / "slide0.tif", cohort["series"]]
    assert cohort_slides(cohort["cohort"]) == [cohort["cohort"] / "slide0.tif", cohort["series"]]
    assert cohort_slides(cohort["series"]) == [cohort["series"]]


def test_a_folder_of_two_series_is_two_slides_and_cannot_be_opened_as_one(cohort, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in cohort["series"].glob("*.dcm"):
        shutil.copy(f, mixed / f"a_{f.name}")
    dicomize(cohort["root"] / "tiffs" / "slide0.tif", tmp_path / "other")
    for f in (tmp_path / "other").glob("*.dcm"):
        shutil.copy(f, mixed / f"b_{f.name}")
    found = find_dicom_slides(mixed)
    assert len(found) == 2 and {p.name[:2] for p in found} == {"a_", "b_"}
    with pytest.raises(SlideReadError, match=r"mixed: folder holds 2 DICOM series .*name one file"):
        Slide(mixed)
    sizes = {Slide(p).dimensions for p in found}
    assert sizes == {Slide(cohort["tiff"]).dimensions}


def test_dicom_maps_like_the_tiff_it_came_from(cohort, tmp_path):
    """Same map size, probabilities within JPEG tolerance, in one cohort run beside a TIFF slide."""
    result = run_cohort(inferer(TinyFCN()), find_slide_files(cohort["cohort"]), tmp_path / "out")
    assert not result.failed and len(result.done) == 2
    reference = run_cohort(inferer(TinyFCN()), [cohort["tiff"]], tmp_path / "ref")
    assert not reference.failed
    dicom_map = tifffile.imread(tmp_path / "out" / "slide1.tif", key=0).astype(float)
    tiff_map = tifffile.imread(tmp_path / "ref" / "slide1.tif", key=0).astype(float)
    assert dicom_map.shape == tiff_map.shape
    scale = 255.0 if tiff_map.max() > 1 else 1.0  # maps are stored as uint8 or float probabilities
    diff = np.abs(dicom_map - tiff_map) / scale
    assert diff.max() < 0.05 and diff.mean() < 0.005


def test_a_file_without_image_type_is_refused_naming_the_attribute(cohort, tmp_path):
    import pydicom

    first = sorted(cohort["series"].glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    del ds.ImageType
    bad = tmp_path / "no_image_type.dcm"
    ds.save_as(bad)
    with pytest.raises(SlideReadError, match=r"no_image_type.dcm: DICOM file without ImageType \(0008,0008\)"):
        Slide(bad)


@pytest.mark.parametrize("backend", ["tifffile", "cucim"])
def test_other_backends_are_refused_for_dicom(cohort, backend):
    with pytest.raises(SlideReadError, match=f"reads through OpenSlide 4; the {backend} backend"):
        Slide(cohort["series"], backend=backend)


def test_a_folder_without_dicom_files_is_still_not_a_slide(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SlideReadError, match="is a folder, not a slide file"):
        Slide(tmp_path)
