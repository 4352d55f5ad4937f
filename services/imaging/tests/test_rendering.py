"""Frame rendering: the greyscale pipeline, colour, compressed syntaxes, bounds and errors.

Expected grey levels are computed here from pydicom's pixel array with the formulas of
PS3.3 C.11.2.1.2 written out piece by piece, and compared with the rendered PNG decoded
back with Pillow.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.utils import pixel_array
from pydicom.uid import MPEG4HP41

from carnet_imaging.rendering import (
    DEFAULT_JPEG_QUALITY,
    THUMBNAIL_SIZE,
    ImageFormat,
    RenderedImage,
    RenderOptions,
    Window,
    WindowPreset,
    render_frame,
    render_thumbnail,
)
from carnet_kit.errors import CarnetError, FailedPrecondition, InvalidArgument

PNG = RenderOptions(image_format=ImageFormat.PNG)


def _file(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not in pydicom's test data"
    with open(path, "rb") as stored:
        return stored.read()


def _dataset(name: str) -> Dataset:
    return dcmread(io.BytesIO(_file(name)))


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _stored(name: str, index: int = 0, **kwargs: Any) -> np.ndarray:
    return pixel_array(io.BytesIO(_file(name)), index=index, **kwargs).astype(np.float64)


def _pixels(image: RenderedImage) -> np.ndarray:
    decoded = Image.open(io.BytesIO(image.data))
    assert decoded.size == (image.width, image.height)
    return np.asarray(decoded)


def _png(data: bytes, frame: int = 1, **options: Any) -> tuple[Image.Image, np.ndarray]:
    image = render_frame(data, frame, RenderOptions(image_format=ImageFormat.PNG, **options))
    assert image.media_type == "image/png"
    decoded = Image.open(io.BytesIO(image.data))
    return decoded, np.asarray(decoded)


def _linear(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """VOI LUT Function LINEAR, PS3.3 C.11.2.1.2.1, output 0..255."""
    low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    inside = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    return np.rint(np.select([x <= low, x > high], [0.0, 255.0], inside))


def _linear_exact(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """VOI LUT Function LINEAR_EXACT, PS3.3 C.11.2.1.3.2, output 0..255."""
    inside = ((x - c) / w + 0.5) * 255
    return np.rint(np.select([x <= c - w / 2, x > c + w / 2], [0.0, 255.0], inside))


def _sigmoid(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """VOI LUT Function SIGMOID, PS3.3 C.11.2.1.3.1, output 0..255."""
    return np.rint(255 / (1 + np.exp(-4 * (x - c) / w)))


def _min_max(x: np.ndarray) -> np.ndarray:
    return np.rint((x - x.min()) * 255 / (x.max() - x.min()))


def _reason(error: pytest.ExceptionInfo[CarnetError]) -> str:
    return error.value.reason


# ---------------------------------------------------------------- greyscale


def test_ct_without_a_window_maps_its_lowest_and_highest_hu_to_black_and_white() -> None:
    hu = _stored("CT_small.dcm") * 1 - 1024  # Rescale Slope 1, Intercept -1024
    image, pixels = _png(_file("CT_small.dcm"))
    assert (image.mode, image.size) == ("L", (128, 128))
    np.testing.assert_array_equal(pixels, _min_max(hu))
    assert pixels[hu == hu.min()].max() == 0
    assert pixels[hu == hu.max()].min() == 255


def _ct_with_probes(*hu_values: float) -> bytes:
    """CT_small with its first pixels set to the given HU values (slope 1, intercept -1024)."""
    ds = _dataset("CT_small.dcm")
    stored = ds.pixel_array.copy()
    for position, value in enumerate(hu_values):
        stored[0, position] = int(value) + 1024
    ds.PixelData = stored.tobytes()
    return _part10(ds)


@pytest.mark.parametrize(
    ("preset", "center", "width"),
    [
        (WindowPreset.LUNG, -600, 1500),
        (WindowPreset.BONE, 400, 1800),
        (WindowPreset.BRAIN, 40, 80),
        (WindowPreset.ABDOMEN, 40, 400),
    ],
)
def test_a_preset_maps_centre_minus_half_width_to_black_and_plus_half_width_to_white(
    preset: WindowPreset, center: int, width: int
) -> None:
    probes = (center - width // 2, center + width // 2, center, center - width // 2 - 50, center + width // 2 + 50)
    data = _ct_with_probes(*probes)
    _, pixels = _png(data, window=preset)
    assert pixels[0, :5].tolist() == [0, 255, 128, 0, 255]
    hu = pixel_array(io.BytesIO(data)).astype(np.float64) - 1024
    np.testing.assert_array_equal(pixels, _linear_exact(hu, center, width))


def test_presets_give_different_images_of_the_same_ct() -> None:
    data = _file("CT_small.dcm")
    rendered = {preset: _png(data, window=preset)[1] for preset in WindowPreset}
    assert not np.array_equal(rendered[WindowPreset.LUNG], rendered[WindowPreset.BONE])
    assert not np.array_equal(rendered[WindowPreset.BRAIN], rendered[WindowPreset.ABDOMEN])
    # The narrow brain window saturates more of the image than the wide bone window.
    saturated = {preset: int(np.count_nonzero((pixels == 0) | (pixels == 255))) for preset, pixels in rendered.items()}
    assert saturated[WindowPreset.BRAIN] > saturated[WindowPreset.BONE]


def test_the_file_window_is_applied_with_the_linear_function() -> None:
    stored = _stored("MR_small.dcm")  # Window Center 600, Width 1600, no rescale
    image, pixels = _png(_file("MR_small.dcm"))
    assert (image.mode, image.size) == ("L", (64, 64))
    np.testing.assert_array_equal(pixels, _linear(stored, 600, 1600))


def test_a_requested_window_overrides_the_file_window() -> None:
    stored = _stored("MR_small.dcm")
    _, pixels = _png(_file("MR_small.dcm"), window=Window(1000, 500))
    np.testing.assert_array_equal(pixels, _linear_exact(stored, 1000, 500))
    assert not np.array_equal(pixels, _linear(stored, 600, 1600))


@pytest.mark.parametrize(
    ("function", "formula"), [("SIGMOID", _sigmoid), ("LINEAR_EXACT", _linear_exact), ("LINEAR", _linear)]
)
def test_the_voi_lut_function_of_the_file_is_honoured(function: str, formula: Any) -> None:
    ds = _dataset("MR_small.dcm")
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 900, 700, function
    _, pixels = _png(_part10(ds))
    np.testing.assert_array_equal(pixels, formula(_stored("MR_small.dcm"), 900, 700))


def test_only_the_first_of_several_file_windows_is_used() -> None:
    ds = _dataset("MR_small.dcm")
    ds.WindowCenter, ds.WindowWidth = [300, 1200], [400, 2000]
    _, pixels = _png(_part10(ds))
    np.testing.assert_array_equal(pixels, _linear(_stored("MR_small.dcm"), 300, 400))


def test_the_voi_lut_sequence_is_used_when_the_file_has_no_window() -> None:
    ds = _dataset("vlut_04.dcm")
    entries, first, bits = ds.VOILUTSequence[0].LUTDescriptor
    lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
    stored = _stored("vlut_04.dcm")
    expected = np.rint(lut[np.clip(stored - first, 0, entries - 1).astype(int)] * 255 / (2**bits - 1))
    _, pixels = _png(_file("vlut_04.dcm"))
    np.testing.assert_array_equal(pixels, expected)


def test_the_modality_lut_sequence_replaces_rescale() -> None:
    ds = _dataset("mlut_18.dcm")
    entries, first, _ = ds.ModalityLUTSequence[0].LUTDescriptor
    lut = np.asarray(ds.ModalityLUTSequence[0].LUTData, dtype=np.float64)
    modality = lut[np.clip(_stored("mlut_18.dcm") - first, 0, entries - 1).astype(int)]
    _, pixels = _png(_file("mlut_18.dcm"))
    np.testing.assert_array_equal(pixels, _min_max(modality))


def test_a_modality_lut_first_value_written_unsigned_is_read_as_signed() -> None:
    ds = _dataset("mlut_18.dcm")  # signed pixels, LUT Descriptor [4096, -2048, 16]
    descriptor = ds.ModalityLUTSequence[0]["LUTDescriptor"]
    descriptor.VR, descriptor.value = "US", [4096, 63488, 16]
    _, pixels = _png(_part10(ds))
    _, reference = _png(_file("mlut_18.dcm"))
    np.testing.assert_array_equal(pixels, reference)


def test_an_enhanced_ct_takes_rescale_and_window_from_its_functional_groups() -> None:
    ds = _dataset("eCT_Supplemental.dcm")
    shared = ds.SharedFunctionalGroupsSequence[0]
    intercept = float(shared.PixelValueTransformationSequence[0].RescaleIntercept)
    center = float(shared.FrameVOILUTSequence[0].WindowCenter)
    width = float(shared.FrameVOILUTSequence[0].WindowWidth)
    assert (intercept, center, width) == (-1024.0, 49.0, 102.0)
    hu = _stored("eCT_Supplemental.dcm", index=1) + intercept
    _, pixels = _png(_file("eCT_Supplemental.dcm"), frame=2)
    np.testing.assert_array_equal(pixels, _linear(hu, center, width))


def test_monochrome1_is_inverted_after_windowing() -> None:
    ds = _dataset("MR_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    _, inverted = _png(_part10(ds))
    _, normal = _png(_file("MR_small.dcm"))
    np.testing.assert_array_equal(inverted, 255 - normal)


def test_a_monochrome1_radiograph_shows_its_lowest_values_white() -> None:
    stored = _stored("RG3_UNCR.dcm")  # MONOCHROME1, Window Center 550, Width 1024
    image, pixels = _png(_file("RG3_UNCR.dcm"))
    assert (image.mode, image.size) == ("L", (1760, 1760))
    np.testing.assert_array_equal(pixels, 255 - _linear(stored, 550, 1024))
    assert pixels[stored == stored.min()].min() == 255


def test_a_multi_frame_image_renders_the_frame_asked_for() -> None:
    data = _file("emri_small.dcm")  # 10 frames, no window
    _, fifth = _png(data, frame=5)
    _, first = _png(data, frame=1)
    np.testing.assert_array_equal(fifth, _min_max(_stored("emri_small.dcm", index=4)))
    np.testing.assert_array_equal(first, _min_max(_stored("emri_small.dcm", index=0)))
    assert not np.array_equal(first, fifth)


def test_a_multi_frame_palette_image_renders_its_last_frame() -> None:
    ds = _dataset("OBXXXX1A_2frame.dcm")
    red = np.frombuffer(ds.RedPaletteColorLookupTableData, dtype="<u2")
    first, second = (_stored("OBXXXX1A_2frame.dcm", index=i).astype(int) for i in (0, 1))
    assert not np.array_equal(first, second)
    image, pixels = _png(_file("OBXXXX1A_2frame.dcm"), frame=2)
    assert (image.mode, image.size) == ("RGB", (800, 600))
    np.testing.assert_array_equal(pixels[..., 0], red[second] >> 8)


# ---------------------------------------------------------------- compressed transfer syntaxes


@pytest.mark.parametrize(
    ("compressed", "uncompressed", "frame"),
    [
        ("MR_small_jp2klossless.dcm", "MR_small.dcm", 1),  # JPEG 2000 lossless
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", 1),  # JPEG-LS lossless
        ("MR_small_RLE.dcm", "MR_small.dcm", 1),  # RLE
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm", 1),  # JPEG lossless, RGB
        ("US1_J2KR.dcm", "US1_UNCR.dcm", 1),  # JPEG 2000 lossless, YBR_RCT
        ("SC_rgb_rle.dcm", "SC_rgb.dcm", 1),  # RLE, RGB
        ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm", 1),  # RLE, palette
        ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm", 7),  # JPEG 2000, multi-frame
        ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm", 10),  # JPEG-LS, multi-frame
        ("emri_small_RLE.dcm", "emri_small.dcm", 3),  # RLE, multi-frame
    ],
)
def test_a_losslessly_compressed_frame_renders_as_its_uncompressed_original(
    compressed: str, uncompressed: str, frame: int
) -> None:
    image, pixels = _png(_file(compressed), frame=frame)
    original_image, original = _png(_file(uncompressed), frame=frame)
    assert (image.mode, image.size) == (original_image.mode, original_image.size)
    np.testing.assert_array_equal(pixels, original)


def test_jpeg_baseline_ybr_full_renders_close_to_the_rgb_original() -> None:
    image, pixels = _png(_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert (image.mode, image.size) == ("RGB", (100, 100))
    reference = _stored("SC_rgb.dcm")
    assert np.abs(pixels.astype(np.float64) - reference).max() <= 8
    assert pixels[0, 0].tolist() == pytest.approx([255, 0, 0], abs=2)


def test_jpeg_baseline_multi_frame_ybr_full_422_renders_rgb() -> None:
    image, pixels = _png(_file("color3d_jpeg_baseline.dcm"), frame=60)
    assert (image.mode, image.size) == ("RGB", (640, 480))
    np.testing.assert_array_equal(pixels, _stored("color3d_jpeg_baseline.dcm", index=59))


def test_jpeg_extended_12_bit_is_decoded_and_windowed() -> None:
    stored = _stored("JPGExtended.dcm")
    assert stored.max() > 255  # really more than 8 bits
    image, pixels = _png(_file("JPGExtended.dcm"))
    assert (image.mode, image.size) == ("L", (256, 1024))
    np.testing.assert_array_equal(pixels, _min_max(stored))


def test_jpeg_lossless_greyscale_is_decoded_and_windowed() -> None:
    image, pixels = _png(_file("JPGLosslessP14SV1_1s_1f_8b.dcm"))  # Window Center 127, Width 254
    assert (image.mode, image.size) == ("L", (1024, 768))
    np.testing.assert_array_equal(pixels, _linear(_stored("JPGLosslessP14SV1_1s_1f_8b.dcm"), 127, 254))


def test_jpeg_2000_lossy_is_decoded() -> None:
    image, pixels = _png(_file("MR2_J2KI.dcm"))
    _, lossless = _png(_file("MR2_UNCR.dcm"))
    assert (image.mode, image.size) == ("L", (1024, 1024))
    assert np.abs(pixels.astype(int) - lossless.astype(int)).mean() < 2


# ---------------------------------------------------------------- colour


def test_rgb_is_rendered_as_stored() -> None:
    image, pixels = _png(_file("SC_rgb.dcm"))
    assert (image.mode, image.size) == ("RGB", (100, 100))
    np.testing.assert_array_equal(pixels, _stored("SC_rgb.dcm"))
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[50, 50].tolist() == [128, 128, 255]


def test_16_bit_rgb_keeps_its_high_byte() -> None:
    _, pixels = _png(_file("SC_rgb_16bit.dcm"))
    np.testing.assert_array_equal(pixels, _stored("SC_rgb_16bit.dcm").astype(np.uint16) >> 8)
    _, eight_bit = _png(_file("SC_rgb.dcm"))
    np.testing.assert_array_equal(pixels, eight_bit)


@pytest.mark.parametrize("name", ["SC_ybr_full_uncompressed.dcm", "SC_ybr_full_422_uncompressed.dcm"])
def test_ybr_full_is_converted_to_rgb(name: str) -> None:
    ybr = _stored(name, raw=True)
    y, cb, cr = ybr[..., 0], ybr[..., 1] - 128, ybr[..., 2] - 128
    # PS3.3 C.7.6.3.1.2, inverted.
    expected = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    image, pixels = _png(_file(name))
    assert (image.mode, image.size) == ("RGB", (100, 100))
    assert np.abs(pixels - np.clip(expected, 0, 255)).max() <= 1


def test_palette_colour_goes_through_its_palettes() -> None:
    ds = _dataset("OBXXXX1A.dcm")
    index = _stored("OBXXXX1A.dcm").astype(int)
    palettes = [
        np.frombuffer(ds[f"{colour}PaletteColorLookupTableData"].value, dtype="<u2")
        for colour in ("Red", "Green", "Blue")
    ]
    expected = np.stack([palette[index] >> 8 for palette in palettes], axis=-1)
    image, pixels = _png(_file("OBXXXX1A.dcm"))
    assert (image.mode, image.size) == ("RGB", (800, 600))
    np.testing.assert_array_equal(pixels, expected)


def test_a_window_is_ignored_for_colour_images() -> None:
    _, windowed = _png(_file("SC_rgb.dcm"), window=WindowPreset.LUNG)
    np.testing.assert_array_equal(windowed, _stored("SC_rgb.dcm"))


# ---------------------------------------------------------------- output


def test_jpeg_is_the_default_format_and_its_quality_matters() -> None:
    data = _file("US1_UNCR.dcm")
    default = render_frame(data)
    assert (default.media_type, default.width, default.height) == ("image/jpeg", 640, 480)
    assert Image.open(io.BytesIO(default.data)).format == "JPEG"
    low = render_frame(data, 1, RenderOptions(quality=20))
    high = render_frame(data, 1, RenderOptions(quality=100))
    assert len(low.data) < len(default.data) < len(high.data)
    assert DEFAULT_JPEG_QUALITY == 90


def test_a_jpeg_stays_close_to_the_png() -> None:
    jpeg = _pixels(render_frame(_file("MR_small.dcm")))
    _, png = _png(_file("MR_small.dcm"))
    assert np.abs(jpeg.astype(int) - png.astype(int)).mean() < 3


@pytest.mark.parametrize(
    ("name", "bound", "expected"),
    [
        ("US1_UNCR.dcm", (200, None), (200, 150)),
        ("US1_UNCR.dcm", (None, 120), (160, 120)),
        ("US1_UNCR.dcm", (200, 60), (80, 60)),
        ("MR_small.dcm", (500, 500), (64, 64)),  # never enlarged
    ],
)
def test_size_bounds_keep_the_aspect_ratio(
    name: str, bound: tuple[int | None, int | None], expected: tuple[int, int]
) -> None:
    image, _ = _png(_file(name), max_width=bound[0], max_height=bound[1])
    assert image.size == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("US1_UNCR.dcm", (128, 96)), ("JPGExtended.dcm", (32, 128)), ("MR_small.dcm", (64, 64))],
)
def test_a_thumbnail_fits_in_the_default_square(name: str, expected: tuple[int, int]) -> None:
    thumbnail = render_thumbnail(_file(name))
    assert THUMBNAIL_SIZE == 128
    assert thumbnail.media_type == "image/jpeg"
    assert (thumbnail.width, thumbnail.height) == expected
    assert Image.open(io.BytesIO(thumbnail.data)).size == expected


def test_a_thumbnail_of_a_given_size_and_format() -> None:
    thumbnail = render_thumbnail(_file("CT_small.dcm"), size=48, image_format=ImageFormat.PNG)
    assert (thumbnail.media_type, thumbnail.width, thumbnail.height) == ("image/png", 48, 48)
    decoded = _pixels(thumbnail)
    full = _png(_file("CT_small.dcm"))[1]
    reduced = np.asarray(Image.fromarray(full).resize((48, 48), Image.Resampling.LANCZOS))
    assert np.abs(decoded.astype(int) - reduced.astype(int)).max() <= 2


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("name", "frame"), [("MR_small.dcm", 2), ("MR_small.dcm", 0), ("emri_small.dcm", 11)])
def test_a_frame_beyond_the_image_is_out_of_range(name: str, frame: int) -> None:
    with pytest.raises(InvalidArgument) as error:
        render_frame(_file(name), frame)
    assert _reason(error) == "FRAME_OUT_OF_RANGE"
    assert error.value.metadata == {"field": "frame_number"}


@pytest.mark.parametrize("name", ["rtplan.dcm", "test-SR.dcm"])
def test_an_object_without_pixels_cannot_be_rendered(name: str) -> None:
    with pytest.raises(FailedPrecondition) as error:
        render_frame(_file(name))
    assert _reason(error) == "PIXEL_DATA_ABSENT"


def test_an_image_stripped_of_its_pixel_data_cannot_be_rendered() -> None:
    ds = _dataset("MR_small.dcm")
    del ds.PixelData
    with pytest.raises(FailedPrecondition) as error:
        render_thumbnail(_part10(ds))
    assert _reason(error) == "PIXEL_DATA_ABSENT"


@pytest.mark.parametrize(
    "data",
    [b"", b"not a DICOM file at all" * 20, b"\x00" * 128 + b"DICM" + b"\x02\x00\x10"],
    ids=["empty", "text", "cut-in-file-meta"],
)
def test_bytes_that_are_not_dicom_are_malformed(data: bytes) -> None:
    with pytest.raises(InvalidArgument) as error:
        render_frame(data)
    assert _reason(error) == "DICOM_MALFORMED"


def test_truncated_pixel_data_is_malformed() -> None:
    data = _file("MR_small.dcm")
    with pytest.raises(InvalidArgument) as error:
        render_frame(data[:-4000])
    assert _reason(error) == "DICOM_MALFORMED"


def test_a_video_transfer_syntax_is_unsupported() -> None:
    ds = _dataset("MR_small.dcm")
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    with pytest.raises(FailedPrecondition) as error:
        render_frame(_part10(ds))
    assert _reason(error) == "TRANSFER_SYNTAX_UNSUPPORTED"
    assert error.value.metadata == {"transfer_syntax_uid": MPEG4HP41}


def test_a_frame_no_decoder_can_read_is_unsupported() -> None:
    # A JPEG Extended stream with a misplaced marker that libjpeg and Pillow both refuse.
    with pytest.raises(FailedPrecondition) as error:
        render_frame(_file("JPEG-lossy.dcm"))
    assert _reason(error) == "TRANSFER_SYNTAX_UNSUPPORTED"


def test_an_unrenderable_photometric_interpretation_is_unsupported() -> None:
    ds = _dataset("SC_rgb.dcm")
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    with pytest.raises(FailedPrecondition) as error:
        render_frame(_part10(ds))
    assert _reason(error) == "TRANSFER_SYNTAX_UNSUPPORTED"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: RenderOptions(quality=0), "quality"),
        (lambda: RenderOptions(quality=101), "quality"),
        (lambda: RenderOptions(max_width=0), "width"),
        (lambda: RenderOptions(max_height=-5), "height"),
        (lambda: Window(40, 0), "window_width"),
        (lambda: Window(float("nan"), 400), "window_center"),
        (lambda: render_thumbnail(b"", size=0), "size"),
    ],
)
def test_out_of_range_options_name_their_field(build: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        build()
    assert _reason(error) == "FIELD_INVALID"
    assert error.value.metadata == {"field": field}


def test_presets_carry_the_contract_values() -> None:
    assert {preset.name: (preset.window.center, preset.window.width) for preset in WindowPreset} == {
        "LUNG": (-600.0, 1500.0),
        "BONE": (400.0, 1800.0),
        "BRAIN": (40.0, 80.0),
        "ABDOMEN": (40.0, 400.0),
    }
