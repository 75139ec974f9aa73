"""Every map writer: atomic output (no partial file, no temporary left) and clear errors about its folder."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from monai_wsseg.inference.engine import SlideMap
from monai_wsseg.io import write_geojson, write_map_tiff, write_nifti, write_overlay_png
from monai_wsseg.utils import atomic
from tests.io.maps import leftovers, one_class_map


def writer_calls(slide_path):
    one = one_class_map(str(slide_path))
    return {
        "tif": lambda path: write_map_tiff(path.with_suffix(".tif"), one),
        "png": lambda path: write_overlay_png(path.with_suffix(".png"), one, slide_path, class_names=["t"],
                                              max_size=300),
        "geojson": lambda path: write_geojson(path.with_suffix(".geojson"), one, class_names=["t"]),
        "nii": lambda path: write_nifti(path.with_suffix(".nii.gz"), one),
    }


@pytest.mark.parametrize("kind", ["tif", "png", "geojson", "nii"])
def test_unwritable_output_folder_is_a_clear_error(tmp_path, slide_path, monkeypatch, kind):
    write = writer_calls(slide_path)[kind]
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(ValueError, match=r"afile.*not a folder"):
        write(afile / "out")
    with pytest.raises(ValueError, match="does not exist"):
        write(tmp_path / "missing" / "out")
    # a read-only folder (root ignores permission bits, so the access check is faked)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    with pytest.raises(ValueError, match="not writable"):
        write(tmp_path / "out")
    assert leftovers(tmp_path) == ["afile"]


def test_write_failure_is_reported_as_not_writable(tmp_path, slide_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic, "open", denied, raising=False)
    with pytest.raises(ValueError, match=r"out\.geojson.*not writable"):
        writer_calls(slide_path)["geojson"](tmp_path / "out")
    assert leftovers(tmp_path) == []


def _partial_then_fail(path, text=b"partial"):
    with open(path, "wb") as f:
        f.write(text)
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("kind", ["tif", "png", "geojson", "nii"])
def test_failure_midway_leaves_no_partial_file(tmp_path, slide_path, monkeypatch, kind):
    calls = writer_calls(slide_path)
    final = {"tif": "out.tif", "png": "out.png", "geojson": "out.geojson", "nii": "out.nii.gz"}[kind]
    calls[kind](tmp_path / "out")  # a finished earlier run, which a failed rerun must not spoil
    before = (tmp_path / final).read_bytes()
    if kind == "tif":
        real = tifffile.TiffWriter.write
        count = {"pages": 0}

        def write_page(self, *args, **kwargs):
            count["pages"] += 1
            if count["pages"] > 1:
                raise RuntimeError("disk went away")
            return real(self, *args, **kwargs)

        # a 3-level pyramid: the first page is written, the second fails
        calls[kind] = lambda path: write_map_tiff(
            path.with_suffix(".tif"), SlideMap("s", np.zeros((1, 1200, 1200), np.float32), 1, 1.0))
        monkeypatch.setattr(tifffile.TiffWriter, "write", write_page)
        error = RuntimeError
    elif kind == "png":
        monkeypatch.setattr(Image.Image, "save", lambda self, fp, *a, **k: _partial_then_fail(fp))
        error = OSError
    elif kind == "geojson":
        real_open = open

        class Failing:
            def __init__(self, path, *args, **kwargs):
                self.f = real_open(path, *args, **kwargs)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, text):
                self.f.write(text[: len(text) // 2])
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(atomic, "open", Failing, raising=False)
        error = OSError
    else:
        def stream_then_fail(image, stream):  # the NIfTI writer streams the image into the temporary file
            stream.write(b"partial")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(nib.Nifti1Image, "to_stream", stream_then_fail)
        error = OSError
    with pytest.raises(error) as info:
        calls[kind](tmp_path / "out")
    if error is OSError:
        assert final in str(info.value)  # the message names the output, not only the temporary file
    assert leftovers(tmp_path) == [final]  # no temporary file left behind
    assert (tmp_path / final).read_bytes() == before
