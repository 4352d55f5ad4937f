"""Rendering of one frame of a stored DICOM instance to PNG or JPEG, and thumbnails.

Pure and synchronous: the service calls :func:`render_frame` and :func:`render_thumbnail`
through :func:`asyncio.to_thread`. Both take the Part 10 bytes of an instance exactly as
stored and decode only the frame asked for.

Greyscale pipeline (PS3.3 C.11, PS3.4 N.2)
------------------------------------------
1. **Modality LUT**: the Modality LUT Sequence (0028,3000) if present, else Rescale Slope
   and Intercept (0028,1053/1052) — from the frame's Pixel Value Transformation
   functional group for enhanced multi-frame objects — giving modality values (HU for CT).
2. **VOI LUT**, the first of:

   * the window asked for (:class:`Window`, or a :class:`WindowPreset`), applied as
     ``LINEAR_EXACT``: ``centre - width/2`` maps to 0 and ``centre + width/2`` to 255;
   * the file's first Window Center/Width (0028,1050/1051) — from the frame's Frame VOI
     LUT functional group for enhanced objects — with its VOI LUT Function (0028,1056):
     ``LINEAR`` (the default), ``LINEAR_EXACT`` or ``SIGMOID``, PS3.3 C.11.2.1.2;
   * the file's first VOI LUT Sequence (0028,3010) item, its output scaled from the
     LUT Descriptor's bit depth to 8 bits;
   * the minimum and maximum modality values of the frame, mapped linearly to 0 and 255
     (a uniform frame renders as the darkest level).
3. **MONOCHROME1** is inverted after the VOI stage (its minimum is white).

Integer frames go through the pipeline once per distinct stored value (a lookup table
built over the frame's value range), then one table look-up per pixel.

Colour
------
``RGB``, ``YBR_FULL`` and ``YBR_FULL_422`` come out of pydicom as RGB; ``YBR_ICT`` and
``YBR_RCT`` (JPEG 2000) are converted by the decoder; ``PALETTE COLOR`` goes through its
palette (segmented palettes included). Samples wider than 8 bits keep their high-order
8 bits. No Modality or VOI LUT applies to colour images.

Compressed transfer syntaxes
----------------------------
Decoded by pydicom's plugins: pylibjpeg with pylibjpeg-libjpeg (JPEG baseline, extended,
lossless), pylibjpeg-openjpeg (JPEG 2000, HTJ2K), pylibjpeg-rle or pydicom itself (RLE),
pyjpegls (JPEG-LS), and Pillow as a second decoder for JPEG and JPEG 2000. Video
(MPEG-2, MPEG-4, HEVC), multi-component JPEG 2000 (Part 2) and JPIP-referenced pixel
data are refused with ``TRANSFER_SYNTAX_UNSUPPORTED``.

Errors
------
Raised as :mod:`carnet_kit.errors` values carrying the imaging contract's reasons:

``FRAME_OUT_OF_RANGE`` (InvalidArgument, ``field`` = ``frame_number``)
    The frame number is below 1 or beyond Number of Frames.
``DICOM_MALFORMED`` (InvalidArgument)
    The bytes are not a parseable Part 10 object, or its image attributes, LUTs or native
    pixel data are inconsistent.
``PIXEL_DATA_ABSENT`` (FailedPrecondition)
    The object has no pixel data (a structured report, a key object selection, ...).
``TRANSFER_SYNTAX_UNSUPPORTED`` (FailedPrecondition, metadata ``transfer_syntax_uid``)
    No installed decoder can decode the frame, or its photometric interpretation cannot
    be shown.
``FIELD_INVALID`` (InvalidArgument, ``field`` as in ``RenderFrameRequest``)
    A rendering option is out of range.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from carnet_kit.errors import FailedPrecondition, InvalidArgument

__all__ = [
    "DEFAULT_JPEG_QUALITY",
    "PNG_COMPRESS_LEVEL",
    "THUMBNAIL_SIZE",
    "ImageFormat",
    "RenderOptions",
    "RenderedImage",
    "Window",
    "WindowPreset",
    "render_frame",
    "render_thumbnail",
]

DEFAULT_JPEG_QUALITY = 90
"""JPEG quality used when none is asked for (the contract's default)."""

THUMBNAIL_SIZE = 128
"""Default longest edge of a thumbnail, in pixels."""

PNG_COMPRESS_LEVEL = 1
"""zlib level of PNG output: 1 encodes a 2000 × 2000 radiograph about five times faster than
Pillow's default of 6 for files some 15 % larger."""

_DEFER_SIZE = 1 << 20
"""Values longer than this (the pixel data) are left in the stored bytes when the header is parsed."""

_MAX_TABLE_ENTRIES = 1 << 17
"""Integer frames whose value range is at most this wide go through a lookup table."""

_REASON_MALFORMED = "DICOM_MALFORMED"
_REASON_FRAME = "FRAME_OUT_OF_RANGE"
_REASON_NO_PIXELS = "PIXEL_DATA_ABSENT"
_REASON_UNSUPPORTED = "TRANSFER_SYNTAX_UNSUPPORTED"
_REASON_FIELD = "FIELD_INVALID"

_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
_PALETTE = "PALETTE COLOR"
_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

_UInt8Array = npt.NDArray[np.uint8]
_FloatArray = npt.NDArray[np.float64]


class ImageFormat(enum.Enum):
    """Output format of a rendered image; the value is its media type."""

    PNG = "image/png"
    """Lossless; what diagnostic viewing should ask for."""
    JPEG = "image/jpeg"
    """Lossy, smaller; the contract's default."""

    @property
    def media_type(self) -> str:
        """The media type of the encoded bytes (``image/png`` or ``image/jpeg``)."""
        return self.value


@dataclasses.dataclass(frozen=True)
class Window:
    """A window centre and width, in modality units (Hounsfield units for CT).

    Parameters
    ----------
    center : float
        The modality value shown as mid-grey.
    width : float
        The range of modality values spread over the 256 grey levels; must be positive.

    Raises
    ------
    carnet_kit.errors.InvalidArgument
        ``FIELD_INVALID`` on ``window_width`` or ``window_center`` when a value is not a
        finite number or the width is not positive.
    """

    center: float
    width: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.center):
            raise InvalidArgument(
                "the window centre must be a finite number", field="window_center", reason=_REASON_FIELD
            )
        if not math.isfinite(self.width) or self.width <= 0:
            raise InvalidArgument(
                "the window width must be a positive number", field="window_width", reason=_REASON_FIELD
            )


class WindowPreset(enum.Enum):
    """Named CT windows (centre, width in HU), the values the imaging contract documents.

    ======= ====== =====
    preset  centre width
    ======= ====== =====
    LUNG    -600   1500
    BONE    400    1800
    BRAIN   40     80
    ABDOMEN 40     400
    ======= ====== =====
    """

    LUNG = Window(-600.0, 1500.0)
    BONE = Window(400.0, 1800.0)
    BRAIN = Window(40.0, 80.0)
    ABDOMEN = Window(40.0, 400.0)
    """Abdomen, or soft tissue."""

    @property
    def window(self) -> Window:
        """The preset's centre and width."""
        value: Window = self.value
        return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class RenderOptions:
    """How to render a frame; the defaults give a full-size JPEG with the file's window.

    Parameters
    ----------
    image_format : ImageFormat
        PNG or JPEG (default, as in the contract).
    quality : int
        JPEG quality, 1 to 100; ignored for PNG.
    window : Window or WindowPreset or None
        The window to apply to greyscale images; ``None`` for the file's own (see the
        module documentation for the order). Ignored for colour images.
    max_width, max_height : int or None
        Bounds of the output in pixels, the aspect ratio kept; ``None`` for no bound.
        Frames are only ever shrunk, never enlarged.

    Raises
    ------
    carnet_kit.errors.InvalidArgument
        ``FIELD_INVALID`` on ``quality``, ``width`` or ``height`` when out of range.
    """

    image_format: ImageFormat = ImageFormat.JPEG
    quality: int = DEFAULT_JPEG_QUALITY
    window: Window | WindowPreset | None = None
    max_width: int | None = None
    max_height: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise InvalidArgument("the JPEG quality must be between 1 and 100", field="quality", reason=_REASON_FIELD)
        for bound, field in ((self.max_width, "width"), (self.max_height, "height")):
            if bound is not None and bound < 1:
                raise InvalidArgument(f"the maximum {field} must be positive", field=field, reason=_REASON_FIELD)


@dataclasses.dataclass(frozen=True)
class RenderedImage:
    """An encoded image and what a response needs to describe it."""

    data: bytes = dataclasses.field(repr=False)
    """The encoded PNG or JPEG."""
    media_type: str
    """``image/png`` or ``image/jpeg``."""
    width: int
    """Width in pixels."""
    height: int
    """Height in pixels."""


class _VoiFunction(enum.Enum):
    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"


@dataclasses.dataclass(frozen=True)
class _VoiWindow:
    center: float
    width: float
    function: _VoiFunction


@dataclasses.dataclass(frozen=True)
class _Lut:
    """A Modality or VOI LUT: ``data[value - first_mapped]``, clamped to the table's ends."""

    first_mapped: int
    bits: int
    data: _FloatArray

    def apply(self, values: _FloatArray) -> _FloatArray:
        last = len(self.data) - 1
        index = np.clip(np.rint(values - self.first_mapped), 0, last).astype(np.intp)
        result: _FloatArray = self.data[index]
        return result


def render_frame(data: bytes, frame_number: int = 1, options: RenderOptions | None = None) -> RenderedImage:
    """Render one frame of a stored DICOM instance as PNG or JPEG.

    Parameters
    ----------
    data : bytes
        The instance as a DICOM Part 10 file, as stored.
    frame_number : int
        The frame to render, 1-based (1 for single-frame images).
    options : RenderOptions, optional
        Format, quality, window and size bounds; :class:`RenderOptions` defaults if omitted.

    Returns
    -------
    RenderedImage
        The encoded image, its media type and its size.

    Raises
    ------
    carnet_kit.errors.InvalidArgument
        ``DICOM_MALFORMED`` when the object cannot be parsed or its native pixel data is
        inconsistent with its image attributes; ``FRAME_OUT_OF_RANGE`` (``field`` is
        ``frame_number``) when the frame does not exist.
    carnet_kit.errors.FailedPrecondition
        ``PIXEL_DATA_ABSENT`` when the object has no pixel data;
        ``TRANSFER_SYNTAX_UNSUPPORTED`` when no installed decoder can decode the frame or
        the photometric interpretation cannot be shown.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> with open(get_testdata_file("CT_small.dcm"), "rb") as stored:
    ...     image = render_frame(stored.read(), 1, RenderOptions(image_format=ImageFormat.PNG, window=WindowPreset.LUNG))
    >>> image.media_type, image.width, image.height
    ('image/png', 128, 128)
    """
    options = options or RenderOptions()
    ds = _parse(data)
    index = _frame_index(ds, frame_number)
    frame = _decode_frame(data, ds, index)
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric in _GREY:
        pixels = _render_grey(frame, ds, index, photometric, options.window)
    elif photometric == _PALETTE:
        pixels = _render_palette(frame, ds)
    else:
        pixels = _render_colour(frame, ds)
    return _encode(pixels, options)


def render_thumbnail(
    data: bytes,
    *,
    size: int = THUMBNAIL_SIZE,
    image_format: ImageFormat = ImageFormat.JPEG,
    frame_number: int = 1,
) -> RenderedImage:
    """Render a small image of one frame, its longest edge at most ``size`` pixels.

    Parameters
    ----------
    data : bytes
        The instance as a DICOM Part 10 file, as stored.
    size : int
        The bound of both edges, in pixels (the aspect ratio is kept).
    image_format : ImageFormat
        PNG or JPEG.
    frame_number : int
        The frame to show, 1-based.

    Returns
    -------
    RenderedImage
        As :func:`render_frame`, with the file's own window.

    Raises
    ------
    carnet_kit.errors.CarnetError
        As :func:`render_frame`; ``FIELD_INVALID`` on ``size`` when it is below 1.
    """
    if size < 1:
        raise InvalidArgument("the thumbnail size must be positive", field="size", reason=_REASON_FIELD)
    options = RenderOptions(image_format=image_format, max_width=size, max_height=size)
    return render_frame(data, frame_number, options)


# ---------------------------------------------------------------- parsing and decoding


def _malformed(message: str) -> InvalidArgument:
    return InvalidArgument(message, reason=_REASON_MALFORMED)


def _unsupported(message: str, transfer_syntax: str) -> FailedPrecondition:
    return FailedPrecondition(message, reason=_REASON_UNSUPPORTED, metadata={"transfer_syntax_uid": transfer_syntax})


def _parse(data: bytes) -> Dataset:
    """The header of the object; the pixel data stays unread in ``data``."""
    try:
        ds = dcmread(io.BytesIO(data), defer_size=_DEFER_SIZE)
        transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            # The deferred values of a deflated object are not at an offset of ``data``.
            ds = dcmread(io.BytesIO(data))
    except Exception as exc:
        raise _malformed(f"the stored object is not a readable DICOM file: {exc}") from exc
    if not transfer_syntax:
        raise _malformed("the stored object has no transfer syntax in its file meta information")
    if not any(keyword in ds for keyword in _PIXEL_DATA_KEYWORDS):
        raise FailedPrecondition("the object has no pixel data to render", reason=_REASON_NO_PIXELS)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if not photometric:
        raise _malformed("the image has no Photometric Interpretation")
    if photometric not in _GREY | _COLOUR | {_PALETTE}:
        raise _unsupported(f"images in {photometric} cannot be rendered", str(transfer_syntax))
    return ds


def _frame_index(ds: Dataset, frame_number: int) -> int:
    """The 0-based index of ``frame_number``, checked against Number of Frames."""
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError) as exc:
        raise _malformed(f"the Number of Frames is not a number: {exc}") from exc
    if not 1 <= frame_number <= frames:
        raise InvalidArgument(
            f"frame {frame_number} does not exist: the image has {frames} frame(s)",
            field="frame_number",
            reason=_REASON_FRAME,
        )
    return frame_number - 1


def _decode_frame(data: bytes, ds: Dataset, index: int) -> npt.NDArray[Any]:
    """Decode the frame at ``index`` only; YBR_FULL and YBR_FULL_422 come out as RGB."""
    transfer_syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if not transfer_syntax.is_transfer_syntax:
        raise _unsupported(f"{transfer_syntax} is not a known transfer syntax", transfer_syntax)
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError as exc:
        raise _unsupported(f"pixel data in {transfer_syntax.name} cannot be decoded", transfer_syntax) from exc
    if not decoder.is_available:
        raise _unsupported(f"no decoder for {transfer_syntax.name} is installed", transfer_syntax)
    # A file-like source lets pydicom read only this frame's bytes.
    source: io.BytesIO | Dataset = ds if transfer_syntax == DeflatedExplicitVRLittleEndian else io.BytesIO(data)
    try:
        frame: npt.NDArray[Any] = pixel_array(source, index=index)
    except RuntimeError as exc:
        # Every installed plugin for the syntax failed on this frame.
        raise _unsupported(f"frame {index + 1} could not be decoded: {exc}", transfer_syntax) from exc
    except Exception as exc:
        raise _malformed(f"the pixel data cannot be read: {exc}") from exc
    return frame


# ---------------------------------------------------------------- greyscale


def _render_grey(
    frame: npt.NDArray[Any],
    ds: Dataset,
    index: int,
    photometric: str,
    requested: Window | WindowPreset | None,
) -> _UInt8Array:
    """Modality LUT, VOI LUT and MONOCHROME1 inversion, as 8-bit grey levels."""
    if frame.ndim != 2:
        raise _malformed(f"a {photometric} frame must have one sample per pixel")
    modality = _modality_transform(ds, index)
    voi = _voi_transform(ds, index, requested)
    invert = photometric == "MONOCHROME1"

    def grey(stored: npt.NDArray[Any]) -> _UInt8Array:
        values = modality(stored.astype(np.float64))
        levels = voi(values)
        return (255 - levels) if invert else levels

    if np.issubdtype(frame.dtype, np.integer) and frame.size:
        low, high = int(frame.min()), int(frame.max())
        if high - low < _MAX_TABLE_ENTRIES:
            table = grey(np.arange(low, high + 1, dtype=np.int64))
            # A 16-bit frame's offsets may not fit its own type (int16 from -32768 to 32767).
            offsets = np.subtract(frame, low, dtype=np.int32 if frame.dtype.itemsize <= 2 else np.int64)
            result: _UInt8Array = table[offsets]
            return result
    return grey(frame)


def _frame_macro(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The item of a functional group macro for one frame (per-frame first, then shared)."""
    for groups, position in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items is None or len(items) <= position:
            continue
        macro = items[position].get(sequence)
        if macro:
            item: Dataset = macro[0]
            return item
    return None


def _modality_transform(ds: Dataset, index: int) -> Callable[[_FloatArray], _FloatArray]:
    """Stored values to modality values: Modality LUT Sequence, else rescale slope and intercept."""
    lut_items = ds.get("ModalityLUTSequence")
    if lut_items:
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        return _read_lut(lut_items[0], ds, signed_first_mapped=signed).apply
    source = _frame_macro(ds, index, "PixelValueTransformationSequence") or ds
    slope = _first_number(source.get("RescaleSlope"))
    intercept = _first_number(source.get("RescaleIntercept"))
    slope = 1.0 if slope is None or slope == 0 else slope
    intercept = intercept or 0.0
    if slope == 1.0 and intercept == 0.0:
        return lambda values: values
    return lambda values: values * slope + intercept


def _voi_transform(
    ds: Dataset, index: int, requested: Window | WindowPreset | None
) -> Callable[[_FloatArray], _UInt8Array]:
    """Modality values to grey levels, by the first VOI source that applies."""
    if requested is not None:
        window = requested.window if isinstance(requested, WindowPreset) else requested
        chosen = _VoiWindow(window.center, window.width, _VoiFunction.LINEAR_EXACT)
        return lambda values: _apply_window(values, chosen)
    file_window = _file_window(ds, index)
    if file_window is not None:
        return lambda values: _apply_window(values, file_window)
    lut_items = ds.get("VOILUTSequence")
    if lut_items:
        lut = _read_lut(lut_items[0], ds, signed_first_mapped=False)
        scale = 255.0 / ((1 << lut.bits) - 1)
        return lambda values: _to_levels(lut.apply(values) * scale)
    return _full_range


def _file_window(ds: Dataset, index: int) -> _VoiWindow | None:
    """The file's first window for this frame, with its VOI LUT Function; None if it has none."""
    source = _frame_macro(ds, index, "FrameVOILUTSequence") or ds
    center = _first_number(source.get("WindowCenter"))
    width = _first_number(source.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    name = str(source.get("VOILUTFunction") or "LINEAR").strip().upper()
    try:
        function = _VoiFunction(name)
    except ValueError:
        function = _VoiFunction.LINEAR
    return _VoiWindow(center, width, function)


def _apply_window(values: _FloatArray, window: _VoiWindow) -> _UInt8Array:
    """PS3.3 C.11.2.1.2 with an output range of 0 to 255."""
    c, w = window.center, window.width
    if window.function is _VoiFunction.SIGMOID:
        exponent = np.clip(-4.0 * (values - c) / w, -700.0, 700.0)
        return _to_levels(255.0 / (1.0 + np.exp(exponent)))
    if window.function is _VoiFunction.LINEAR_EXACT:
        return _to_levels(((values - c) / w + 0.5) * 255.0)
    if w <= 1.0:
        # LINEAR with a width of 1 is a threshold at c - 0.5.
        return np.where(values <= c - 0.5, 0, 255).astype(np.uint8)
    return _to_levels(((values - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0)


def _full_range(values: _FloatArray) -> _UInt8Array:
    """The frame's minimum to 0 and its maximum to 255."""
    if not values.size:
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return _to_levels((values - low) * (255.0 / (high - low)))


def _to_levels(values: _FloatArray) -> _UInt8Array:
    result: _UInt8Array = np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)
    return result


def _read_lut(item: Dataset, ds: Dataset, *, signed_first_mapped: bool) -> _Lut:
    """A LUT from its descriptor and data (PS3.3 C.11.1.1: 0 entries means 65536)."""
    try:
        entries, first_mapped, bits = (int(v) for v in item.LUTDescriptor)
        raw = item.LUTData
    except (AttributeError, TypeError, ValueError) as exc:
        raise _malformed(f"a LUT has no valid descriptor or data: {exc}") from exc
    entries = entries or 65536
    if signed_first_mapped and first_mapped >= 1 << 15:
        # Written as US although the stored values it maps are signed.
        first_mapped -= 1 << 16
    if isinstance(raw, bytes):
        little = bool(ds.file_meta.TransferSyntaxUID.is_little_endian)
        dtype = np.dtype(np.uint8) if len(raw) == entries else np.dtype("<u2" if little else ">u2")
        usable = len(raw) - len(raw) % dtype.itemsize
        table = np.frombuffer(raw[:usable], dtype=dtype).astype(np.float64)
    else:
        table = np.atleast_1d(np.asarray(raw, dtype=np.float64))
    if not table.size or not 1 <= bits <= 16:
        raise _malformed("a LUT is empty or its entries are not 1 to 16 bits")
    return _Lut(first_mapped, bits, table)


def _first_number(value: Any) -> float | None:
    """The first value of a possibly multi-valued DS/IS/FD element, or None if absent or empty."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        if not len(value):
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---------------------------------------------------------------- colour


def _render_palette(frame: npt.NDArray[Any], ds: Dataset) -> _UInt8Array:
    """Palette indices through the Red, Green and Blue palettes, as 8-bit RGB."""
    if frame.ndim != 2:
        raise _malformed("a PALETTE COLOR frame must have one sample per pixel")
    try:
        rgb = apply_color_lut(frame, ds)
    except (AttributeError, ValueError, IndexError) as exc:
        raise _malformed(f"the palette cannot be applied: {exc}") from exc
    return _high_byte(rgb, 8 * rgb.dtype.itemsize)


def _render_colour(frame: npt.NDArray[Any], ds: Dataset) -> _UInt8Array:
    """An RGB frame (pydicom and the JPEG 2000 decoder have converted YBR) as 8-bit RGB."""
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise _malformed("a colour frame must have three samples per pixel")
    bits_stored = int(ds.get("BitsStored") or 8 * frame.dtype.itemsize)
    return _high_byte(frame, bits_stored)


def _high_byte(samples: npt.NDArray[Any], bits: int) -> _UInt8Array:
    """The high-order 8 of ``bits`` bits of each sample."""
    if bits > 8:
        samples = np.right_shift(samples, bits - 8)
    result: _UInt8Array = np.clip(samples, 0, 255).astype(np.uint8)
    return result


# ---------------------------------------------------------------- encoding


def _encode(pixels: _UInt8Array, options: RenderOptions) -> RenderedImage:
    """Shrink within the bounds asked for, then encode with Pillow."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if options.max_width is not None or options.max_height is not None:
        bound = (options.max_width or image.width, options.max_height or image.height)
        image.thumbnail(bound, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if options.image_format is ImageFormat.JPEG:
        image.save(buffer, format="JPEG", quality=options.quality)
    else:
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return RenderedImage(buffer.getvalue(), options.image_format.media_type, image.width, image.height)
