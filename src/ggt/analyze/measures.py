"""No-reference degradation measures for one photo (float32 RGB HxWx3 in [0, 1]).

Each measure is a well-known estimator, named in its docstring, so that its number means something
outside ggt. Measures that look at fine structure (noise, JPEG grid) run at full resolution or on a
full-resolution crop; measures of global appearance (exposure, colour, haze) run on a small copy.
The analysis sizes below keep `compute_measures` well under 0.3 s for a 1024x1024 photo on one core.

All measures are raw numbers in their own units (pixels, 8-bit levels, ratios); the mapping to
severities in [0, 1] lives in `heuristic.py`, so the measures stay reusable by QC and benchmarks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Analysis sizes (long side, pixels). Fine-structure measures use a full-resolution centre crop of at
# most FULL_RES_CROP on each side: a crop keeps the noise and the 8x8 JPEG grid intact, where a resize
# would blur both away.
FULL_RES_CROP = 512
BLUR_SIZE = 768
STRUCTURE_SIZE = 512
GLOBAL_SIZE = 256

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# IJG (libjpeg) luminance quantisation table at quality 50, Annex K of the JPEG standard; Pillow,
# OpenCV and most cameras and social networks scale this table with the quality setting.
_IJG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)
# Low frequencies carry enough non-zero coefficients, even at low quality, to reveal their step.
_JPEG_FREQS = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (0, 3), (3, 0), (2, 2)]


def _check(img: np.ndarray) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image HxWx3, got shape {img.shape}")
    return np.ascontiguousarray(img, dtype=np.float32)


def to_gray(img: np.ndarray) -> np.ndarray:
    """Rec.601 luma (the Y of JPEG), float32 HxW in [0, 1]."""
    img = _check(img)
    return cv2.transform(img, _LUMA.reshape(1, 3)).reshape(img.shape[:2])


def resize_max(img: np.ndarray, max_side: int) -> np.ndarray:
    """Area-downscale so the long side is at most `max_side`; never upscales."""
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1.0:
        return img
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Centre crop of at most size x size whose origin stays on the 8x8 grid of the full image."""
    h, w = img.shape[:2]
    y0 = max(0, (h - size) // 2) // 8 * 8
    x0 = max(0, (w - size) // 2) // 8 * 8
    return img[y0 : y0 + size, x0 : x0 + size]


# --------------------------------------------------------------------------------------------- noise


def _immerkaer_blocks(img: np.ndarray, block: int) -> float:
    """10th percentile over unclipped blocks of the per-block Immerkaer sigma, channels pooled."""
    h, w = img.shape[:2]
    if min(h, w) < 3 * block:
        block = max(4, min(h, w) // 3)
    hh, ww = (h // block) * block, (w // block) * block
    if hh == 0 or ww == 0:
        return 0.0
    img = np.ascontiguousarray(img[:hh, :ww])
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    resp = np.abs(cv2.filter2D(img, cv2.CV_32F, mask, borderType=cv2.BORDER_REFLECT))
    # Block means, minima and maxima through OpenCV (an integer-factor area resize is the exact
    # block mean; a block-sized erosion sampled at block centres is the block minimum): several times
    # faster than numpy reductions over a strided 5-D view.
    est = cv2.resize(resp, (ww // block, hh // block), interpolation=cv2.INTER_AREA)
    est = est.reshape(hh // block, ww // block, 3) * (math.sqrt(math.pi / 2) / 6.0)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (block, block))
    c = block // 2
    lo = cv2.erode(img, kernel)[c::block, c::block].reshape(est.shape)
    hi = cv2.dilate(img, kernel)[c::block, c::block].reshape(est.shape)
    ok = (lo > 0.01) & (hi < 0.99)
    vals = est[ok] if ok.sum() >= 8 else est.ravel()
    return float(np.percentile(vals, 10))


def noise_sigma(img: np.ndarray) -> float:
    """Noise standard deviation (in [0, 1] units), Immerkaer's fast estimator on flat blocks.

    Immerkaer (1996) convolves with a mask that cancels any locally linear signal, so on smooth
    content only noise remains. Texture leaks in, so (like Tai & Yang 2008's edge exclusion) only the
    flattest blocks are trusted: the 10th percentile of per-block estimates, corrected for the
    downward bias of taking a low percentile of noisy estimates (~8 % for 16x16 blocks). Channels are
    pooled, so colour and luminance noise of the same sigma read the same; clipped blocks carry no
    noise and are skipped. JPEG and resizing remove the finest-scale part of noise and leave blotches,
    so the estimate is repeated on a 2x area-downscaled copy (where white noise reads half its sigma)
    and the larger of the two is kept, the coarse one capped at 1.5x the fine one.
    """
    img = center_crop(_check(img), FULL_RES_CROP)
    fine = _immerkaer_blocks(img, 16) / 0.92
    h, w = img.shape[:2]
    if min(h, w) < 64:
        return fine
    half = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    coarse = _immerkaer_blocks(half, 8) * 2.0
    # Fine texture (grass, gravel) also reads higher at the coarse scale; capping the coarse read at
    # 1.5x the fine one keeps most of the gain on compressed noise without inflating texture.
    return float(max(fine, min(coarse, 1.5 * fine)))


# ---------------------------------------------------------------------------------------------- blur


def _grad(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    return gx, gy


def blur_profile(img: np.ndarray, n_dirs: int = 4) -> dict[str, float]:
    """Edge blur width by re-blur gradient ratios, overall and per edge orientation.

    Zhuo & Sim (2011): a step edge blurred by a Gaussian of sigma s has gradient peak proportional to
    1/s, so the ratio of gradient peaks after two known re-blurs (sa < sb) gives
    s^2 = (sb^2 - R^2 sa^2) / (R^2 - 1), independent of edge contrast. The first re-blur also keeps
    noise from reading as sharpness. The 70th percentile over strong edges gives `blur_sigma` (pixels of the
    analysis copy, scaled back to the photo's pixels); the same estimate per edge-normal orientation
    gives the motion blur extent and direction: linear motion widens only edges whose normal lies
    along the motion (Marziliano-style edge widths, here per direction).
    """
    img = _check(img)
    h, w = img.shape[:2]
    small = resize_max(img, BLUR_SIZE)
    scale = max(h, w) / max(small.shape[:2])
    g = to_gray(small)
    sa, sb = 0.7, 2.5
    ga = cv2.GaussianBlur(g, (0, 0), sa)
    gb = cv2.GaussianBlur(g, (0, 0), sb)
    ax, ay = _grad(ga)
    bx, by = _grad(gb)
    ma = np.sqrt(ax * ax + ay * ay)
    mb = np.sqrt(bx * bx + by * by)
    # Strong edges only: local maxima of the gradient in the top 10 % of magnitude.
    thr = max(float(np.percentile(ma, 90)), 0.004)
    peak = ma >= cv2.dilate(ma, np.ones((3, 3), np.uint8))
    sel = peak & (ma > thr) & (mb > 1e-4)
    sel[:4, :] = sel[-4:, :] = False
    sel[:, :4] = sel[:, -4:] = False
    out = {"blur_sigma": 0.0, "blur_anisotropy": 1.0, "blur_direction_deg": 0.0, "edge_count": 0.0}
    n = int(sel.sum())
    out["edge_count"] = float(n)
    if n < 20:
        return out
    r = np.clip(ma[sel] / mb[sel], 1.0 + 1e-3, None)
    r2 = r * r
    s2 = np.clip((sb * sb - r2 * sa * sa) / (r2 - 1.0), 0.0, 400.0)
    # Sobel and the two re-blurs add a fixed width (s^2 = 0.58 on an ideal step); subtract it so a
    # perfect step reads 0. The 70th percentile: neighbouring edges make the re-blurred gradient
    # fall faster and so read too sharp, never too soft.
    sig = np.sqrt(np.clip(s2 - 0.58, 0.0, None))
    out["blur_sigma"] = float(np.percentile(sig, 70) * scale)
    ang = (np.degrees(np.arctan2(ay[sel], ax[sel])) % 180.0).astype(np.float32)
    width = 180.0 / n_dirs
    bins = np.floor(((ang + width / 2) % 180.0) / width).astype(int)
    per = []
    for b in range(n_dirs):
        m = bins == b
        if m.sum() >= 10:
            per.append((float(np.percentile(sig[m], 70)), b * width))
    if len(per) >= 2:
        smax, dmax = max(per)
        smin = min(p[0] for p in per)
        out["blur_anisotropy"] = float((smax + 0.3) / (smin + 0.3))
        out["blur_direction_deg"] = float(dmax)
        out["blur_sigma_max"] = float(smax * scale)
        out["blur_sigma_min"] = float(smin * scale)
    return out


def detail_ratio(img: np.ndarray) -> float:
    """Fine detail relative to coarse structure: how much a 2x down-and-up round trip loses.

    An image that was upscaled (or blurred) holds nothing above half its Nyquist frequency, so a 2x
    area-downscale and bicubic upscale gives it back almost unchanged; a natively sharp photo loses
    its finest detail. The mean absolute loss is divided by the mean gradient of a lightly smoothed
    copy, so that contrast and (for the 1/f spectra of natural images) content largely cancel. Runs
    on a full-resolution centre crop. Sharp photos read ~0.5-1.5, photos upscaled x3 ~0.15-0.25.
    """
    g = to_gray(center_crop(_check(img), FULL_RES_CROP))
    h, w = g.shape
    if min(h, w) < 16:
        return 1.0
    down = cv2.resize(g, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    back = cv2.resize(down, (w, h), interpolation=cv2.INTER_CUBIC)
    gx, gy = _grad(cv2.GaussianBlur(g, (0, 0), 1.0))
    return float(np.abs(g - back).mean() / (np.sqrt(gx * gx + gy * gy).mean() + 1e-4))


def laplacian_variance(img: np.ndarray) -> float:
    """Variance of the Laplacian (Pech-Pacheco et al. 2000) on the analysis copy: a classic focus
    measure, kept for reference; it depends on content too much to be used alone."""
    g = to_gray(resize_max(_check(img), BLUR_SIZE))
    return float(cv2.Laplacian(g, cv2.CV_32F).var())


# ---------------------------------------------------------------------------------------------- jpeg


def _dct_matrix() -> np.ndarray:
    n = 8
    k = np.arange(n)
    d = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


_DCT8 = _dct_matrix()


def difference_profiles(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute difference between neighbouring columns (per column) and rows (per row): block
    boundaries lift these profiles once per block, whatever the content."""
    return np.abs(np.diff(gray, axis=1)).mean(axis=0), np.abs(np.diff(gray, axis=0)).mean(axis=1)


def jpeg_grid(gray255: np.ndarray) -> tuple[float, int, int]:
    """8x8 blockiness (boundary vs. interior differences) and the grid offset that maximises it.

    Wang, Bovik & Evans (2000)-style: mean absolute difference between neighbouring pixels across a
    candidate block boundary, divided by the mean inside blocks. 1.0 means no grid; JPEG at low
    quality reads 1.3 and more. All 8 offsets are tried per axis so a cropped JPEG is still found.
    """
    dx, dy = difference_profiles(gray255)

    def axis(d: np.ndarray) -> tuple[float, int]:
        n = (d.size // 8) * 8
        if n < 16:
            return 1.0, 0
        prof = d[:n].reshape(-1, 8).mean(axis=0)  # prof[k]: boundary between k and k+1
        k = int(np.argmax(prof))
        inner = (prof.sum() - prof[k]) / 7.0
        return float(prof[k] / (inner + 1e-3)), (k + 1) % 8

    bx, ox = axis(dx)
    by, oy = axis(dy)
    return math.sqrt(bx * by), oy, ox


def jpeg_quality(img: np.ndarray) -> dict[str, float]:
    """JPEG blockiness and an estimate of the IJG quality factor from DCT coefficient periodicity.

    A decoded JPEG's 8x8 DCT coefficients sit on multiples of the quantisation step, up to rounding
    (the classical quantisation-table estimation of Fan & de Queiroz 2003, via histogram
    periodicity). The largest step that at least 80 % of non-zero coefficients fit is taken for a few
    low frequencies; the median ratio to the IJG table gives the scale and thus the quality. Steps
    under 4 cannot be told from rounding noise, so quality above ~85 reads as 100 (no JPEG found).
    Runs on a full-resolution crop: any resize destroys the grid.
    """
    img = center_crop(_check(img), FULL_RES_CROP)
    y = to_gray(img).astype(np.float64) * 255.0
    blockiness, oy, ox = jpeg_grid(y)
    out = {"jpeg_blockiness": blockiness, "jpeg_quality": 100.0, "jpeg_steps_found": 0.0}
    h, w = y.shape
    nby, nbx = (h - oy) // 8, (w - ox) // 8
    if nby * nbx < 16:
        return out
    blocks = y[oy : oy + nby * 8, ox : ox + nbx * 8].reshape(nby, 8, nbx, 8).transpose(0, 2, 1, 3) - 128.0
    coef = np.einsum("ij,abjk,lk->abil", _DCT8, blocks, _DCT8, optimize=True).reshape(-1, 8, 8)
    scales = []
    for u, v in _JPEG_FREQS:
        q = _quant_step(np.abs(coef[:, u, v]))
        if q >= 4:
            scales.append(100.0 * q / _IJG_LUMA[u, v])
    if len(scales) >= 3:
        s = float(np.median(scales))
        quality = (200.0 - s) / 2.0 if s <= 100.0 else 5000.0 / s
        out["jpeg_quality"] = float(np.clip(quality, 1.0, 100.0))
    out["jpeg_steps_found"] = float(len(scales))
    return out


_BIN = 0.5
_STEPS = np.arange(4, 256)
_TOP = 1100.0


def _quant_step(mag: np.ndarray, min_count: int = 20, max_err: float = 0.4) -> int:
    """Largest step q whose non-zero multiples the coefficient magnitudes cluster on.

    For each candidate q, the coefficients that quantised to a non-zero level (|c| > q / 2) are
    measured by their mean distance to the nearest non-zero multiple of q, relative to q / 4 (the mean
    distance of values spread evenly). A true step leaves only rounding error (~0.4 of an 8-bit
    level); a smooth coefficient distribution, and any multiple of the true step (whose odd levels
    lie half a step away), read near 1 or above. Divisors of the true step fit as well, hence the
    largest. Computed on a 0.5-wide histogram so the search over steps stays cheap.
    """
    hist, edges = np.histogram(mag, bins=int(_TOP / _BIN), range=(0.0, _TOP))
    nz = np.flatnonzero(hist)  # coefficient histograms are sparse; skip the empty bins
    centers = (edges[nz] + edges[nz + 1]) / 2
    counts = hist[nz].astype(np.float64)
    steps = _STEPS[:, None].astype(np.float64)
    level = np.maximum(np.rint(centers[None, :] / steps), 1.0)
    dist = np.abs(centers[None, :] - level * steps)
    w = counts[None, :] * (centers[None, :] > steps / 2)
    count = w.sum(axis=1)
    err = (w * dist).sum(axis=1) / np.maximum(count, 1)
    # Heavy compression clips pixels and chroma, which pushes coefficients a few levels off their
    # step; allow that in proportion to the step.
    ok = (count >= min_count) & (err <= max_err * _STEPS / 4.0) & (err <= np.maximum(1.0, 0.06 * _STEPS))
    return int(_STEPS[ok].max()) if ok.any() else 0


# ------------------------------------------------------------------------------- exposure and colour


def exposure(img: np.ndarray) -> dict[str, float]:
    """Luminance statistics: mean, median, percentiles, log-average (Reinhard's scene key), RMS
    contrast (Peli 1990), the fraction of clipped pixels, and the mean and highlight (99.5th
    percentile) of *linear* luminance, from which exposure in stops is judged."""
    g = to_gray(resize_max(_check(img), GLOBAL_SIZE))
    p = np.percentile(g, [1, 5, 50, 95, 99])
    lin = np.where(g <= 0.04045, g / 12.92, ((g + 0.055) / 1.055) ** 2.4)
    lin_p = np.percentile(lin, [0.5, 99.5])
    return {
        "linear_mean": float(lin.mean()),
        "linear_p005": float(lin_p[0]),
        "linear_p995": float(lin_p[1]),
        "brightness_mean": float(g.mean()),
        "brightness_median": float(p[2]),
        "brightness_p01": float(p[0]),
        "brightness_p05": float(p[1]),
        "brightness_p95": float(p[3]),
        "brightness_p99": float(p[4]),
        "brightness_logavg": float(np.exp(np.log(np.clip(g, 0.0, 1.0) + 1e-3).mean())),
        "contrast_rms": float(g.std()),
        "dynamic_range": float(p[4] - p[0]),
        "clipped_dark": float((g < 0.02).mean()),
        "clipped_bright": float((g > 0.98).mean()),
    }


def colour(img: np.ndarray) -> dict[str, float]:
    """Saturation, colourfulness, colour cast and sepia toning.

    - `saturation_mean`: mean HSV saturation.
    - `colorfulness`: Hasler & Suesstrunk (2003) on opponent channels (0-255 scale).
    - `color_cast`: the equivalent-circle cast factor K = D / M in CIELab (Xu et al. 2008): the
      distance of the mean chroma from neutral over the spread of chroma. K > 1 means the whole
      photo is pushed to one hue rather than merely containing coloured objects.
    - `sepia`: how much the photo is a *tinted monochrome*: chroma vectors all point the same way
      (resultant length near 1) with noticeable but modest chroma, in the yellow-brown hue range.
      A grey photo (no chroma) and a colourful one (spread hues) both read near 0.
    """
    small = resize_max(_check(img), GLOBAL_SIZE)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    sat = hsv[..., 1]
    r, g, b = small[..., 0] * 255, small[..., 1] * 255, small[..., 2] * 255
    rg, yb = r - g, 0.5 * (r + g) - b
    colorfulness = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)
    lum, a, bb = lab[..., 0], lab[..., 1], lab[..., 2]
    mid = (lum > 8) & (lum < 95)
    if mid.sum() < 16:
        mid = np.ones_like(lum, dtype=bool)
    a, bb = a[mid], bb[mid]
    da, db = float(a.mean()), float(bb.mean())
    d = math.hypot(da, db)
    m = math.hypot(float(a.std()), float(bb.std()))
    cast = d / (m + 1.0)
    chroma = np.hypot(a, bb)
    mean_chroma = float(chroma.mean())
    resultant = d / (mean_chroma + 1e-6)
    hue = math.degrees(math.atan2(db, da)) % 360.0
    # A toned monochrome print has one chroma per grey level: a and b are (nearly) functions of L.
    # A colour photo, however warm, has chroma that varies independently of lightness (a red and a
    # green object of the same L). The share of chroma left after a quadratic fit on L separates them.
    lm = lum[mid].astype(np.float64) / 100.0
    basis = np.stack([np.ones_like(lm), lm, lm * lm], axis=1)
    ab = np.stack([a, bb], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(basis, ab, rcond=None)
    resid = float(np.sqrt(((ab - basis @ coef) ** 2).sum(axis=1).mean()))
    mono = float(np.clip(1.0 - resid / (mean_chroma + 1e-6), 0.0, 1.0))
    # Sepia is a muted brown: toned prints sit between orange and yellow (Lab hue ~45-100) at modest
    # chroma. A saturated orange monochrome (a fundus photo, a sunset) is not a toned print.
    warm = 1.0 if 45.0 <= hue <= 100.0 else 0.0
    muted = float(np.clip((40.0 - mean_chroma) / 10.0, 0, 1))
    sepia = (
        warm
        * muted
        * float(np.clip((mono - 0.65) / 0.25, 0, 1))
        * float(np.clip((mean_chroma - 1.5) / 6.0, 0, 1))
    )
    return {
        "saturation_mean": float(sat.mean()),
        "colorfulness": float(colorfulness),
        "color_cast": float(cast),
        "cast_hue_deg": float(hue),
        "chroma_mean": mean_chroma,
        "chroma_resultant": float(resultant),
        "chroma_mono": mono,
        "sepia": float(sepia),
    }


def dark_channel(img: np.ndarray) -> dict[str, float]:
    """Haze density from He, Sun & Tang's dark channel prior (2009).

    In haze-free outdoor photos most patches have some channel near zero; airlight lifts that minimum.
    The airlight A is the mean colour of the brightest 0.1 % of the dark channel; the dark channel of
    I / A estimates 1 - t (t: transmission). Its median is the haze density, its 10th percentile how
    much even the nearest, darkest patches are veiled. The patch is ~1/30 of the short side (He et al.
    used 15 px on ~500 px photos).
    """
    small = resize_max(_check(img), GLOBAL_SIZE)
    h, w = small.shape[:2]
    k = max(3, round(min(h, w) / 30) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    dc = cv2.erode(small.min(axis=2), kernel)
    flat = dc.ravel()
    n = max(1, flat.size // 1000)
    idx = np.argpartition(flat, -n)[-n:]
    airlight = small.reshape(-1, 3)[idx].mean(axis=0)
    # Airlight is bright by nature (sky, fog); a dim "airlight" means a dark or texture-only photo,
    # whose dark channel must not be inflated by dividing by it.
    airlight = np.clip(airlight, 0.8, 1.0)
    norm = cv2.erode((small / airlight).min(axis=2), kernel)
    return {
        "haze_dark_channel": float(np.median(norm)),
        "haze_dark_p10": float(np.percentile(norm, 10)),
        "haze_airlight": float(airlight.mean()),
    }


# ------------------------------------------------------------------------------- structure: weather


RAIN_SIZE = 512


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`a` moved by (dy, dx) pixels, edges replicated: out[y, x] = a[y - dy, x - dx]."""
    padded = cv2.copyMakeBorder(a, max(dy, 0), max(-dy, 0), max(dx, 0), max(-dx, 0), cv2.BORDER_REPLICATE)
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return padded[y0 : y0 + a.shape[0], x0 : x0 + a.shape[1]]


def _thin_lines(
    g: np.ndarray, angle_deg: float, thr: float, faint: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright and dark thin-line pixels along one orientation, with flat flanks and continuity, and
    the bright ones again at the lower threshold `faint` (sharing the shifted copies, the costly part).

    A pixel is on a bright line of this orientation when both neighbours two pixels away across it
    are darker by `thr` *and alike* (a line on a locally flat background; an edge or a texture
    gradient has unequal flanks), and so are its neighbours three pixels along the line.
    """
    t = math.radians(angle_deg)
    ux, uy = math.cos(t), math.sin(t)
    py, px = round(2 * ux), round(-2 * uy)
    left, right = _shift(g, py, px), _shift(g, -py, -px)
    flank = np.abs(left - right)
    up = g - np.maximum(left, right)
    down = np.minimum(left, right) - g
    sy, sx = round(3 * uy), round(3 * ux)

    def run(m: np.ndarray) -> np.ndarray:
        return m & _shift(m, sy, sx) & _shift(m, -sy, -sx)

    bright = ((up > thr) & (flank < 0.5 * up + 0.01)).astype(np.uint8)
    dark = ((down > thr) & (flank < 0.5 * down + 0.01)).astype(np.uint8)
    bright_faint = ((up > faint) & (flank < 0.5 * up + 0.01)).astype(np.uint8)
    return run(bright), run(dark), run(bright_faint)


_RAIN_ANGLES = list(range(0, 180, 15))


def rain_streaks(img: np.ndarray, noise: float | None = None) -> dict[str, float]:
    """Directional streak energy: many thin bright lines that all run the same way.

    For each of 12 orientations, thin-line pixels are counted (see `_thin_lines`: brighter than both
    flanks, flanks alike, continued along the orientation). Rain adds light along parallel streaks,
    so bright-line pixels pile up at one orientation (and its neighbours, streaks are not perfectly
    straight). Scene structure such as window frames, cables, mortar or text gives dark lines along
    the same orientations as its bright ones, which are subtracted. `rain_streak_energy` is the
    excess of bright-line pixels at the dominant orientation over both the dark ones there and an
    even share (per 1000 pixels); `rain_coherence` the dominant share of bright-line pixels;
    `rain_direction_deg` the orientation (0 = horizontal, 90 = vertical; angles run from the
    x axis towards the y axis, which points down).
    """
    return _rain(img, noise)[0]


# Faint-streak threshold of `rain_lines`: a streak that a blur, a JPEG and a veil have dimmed to a
# contrast of a few grey levels is still plain to see. Chosen on the training renders (rain against
# every other category, all renderers); 0.02 (the `rain_streaks` floor) missed the faint streaks,
# 0.005 let more scene texture in.
RAIN_LINE_THR = 0.008


def rain_lines(img: np.ndarray, noise: float | None = None) -> dict[str, float]:
    """Faint parallel bright lines: thin bright-line pixels at the dominant orientation in excess of
    those at the perpendicular one, at a low contrast threshold (RAIN_LINE_THR or 2 noise sigmas).

    `rain_streaks` subtracts dark lines at the same orientation, which also removes dense rain (the
    gaps between close bright streaks read as dark lines) and, with its 0.02 threshold, misses streaks
    that a blur, a JPEG and a veil have dimmed. Here the baseline is the perpendicular orientation:
    scene texture (grass, gravel, skin) makes lines at every orientation, while rain makes them along
    one. `rain_line_excess` is that excess per 1000 pixels, `rain_line_coherence` the dominant share
    of all bright-line pixels at this threshold.
    """
    return _rain(img, noise)[1]


def _rain(img: np.ndarray, noise: float | None) -> tuple[dict[str, float], dict[str, float]]:
    """`rain_streaks` and `rain_lines` from one pass over the orientations."""
    small = resize_max(_check(img), RAIN_SIZE)
    g = cv2.GaussianBlur(to_gray(small), (0, 0), 0.6)
    sigma = noise_sigma(img) if noise is None else noise
    thr = max(0.02, 3 * sigma)
    thr_faint = max(RAIN_LINE_THR, 2 * sigma)
    n = len(_RAIN_ANGLES)
    hb, hd, hf = np.zeros(n), np.zeros(n), np.zeros(n)
    for i, a in enumerate(_RAIN_ANGLES):
        b, d, bf = _thin_lines(g, a, thr, thr_faint)
        hb[i], hd[i], hf[i] = float(b.mean()), float(d.mean()), float(bf.mean())
    nb = hb + np.roll(hb, 1) + np.roll(hb, -1)
    nd = hd + np.roll(hd, 1) + np.roll(hd, -1)
    k = int(np.argmax(nb))
    excess = (nb[k] - max(nd[k], 3.0 / len(hb) * hb.sum())) * 1000
    streaks = {
        "rain_streak_energy": float(max(excess, 0.0)),
        "rain_coherence": float(nb[k] / (hb.sum() + 1e-9)),
        "rain_direction_deg": _mean_angle(hb, k),
    }
    nf = hf + np.roll(hf, 1) + np.roll(hf, -1)
    kf = int(np.argmax(nf))
    lines = {
        "rain_line_excess": float(max(nf[kf] - nf[(kf + n // 2) % n], 0.0) * 1000),
        "rain_line_coherence": float(nf[kf] / (hf.sum() + 1e-9)),
    }
    return streaks, lines


def _mean_angle(hist: np.ndarray, k: int) -> float:
    """Orientation (degrees, 0-180) as the weighted circular mean of bin k and its neighbours."""
    n = len(hist)
    idx = [(k - 1) % n, k, (k + 1) % n]
    w = np.array([hist[i] for i in idx], dtype=np.float64)
    theta = np.radians(np.array(idx, dtype=np.float64) * 360.0 / n)  # doubled angles: 180 -> 360
    if w.sum() <= 0:
        return float(k * 180.0 / n)
    ang = math.degrees(math.atan2(float((w * np.sin(theta)).sum()), float((w * np.cos(theta)).sum())))
    return float((ang % 360.0) / 2.0)


def _ring(radius: int) -> np.ndarray:
    n = 2 * radius + 1
    y, x = np.mgrid[:n, :n] - radius
    d = np.hypot(x, y)
    return ((d >= radius - 0.5) & (d <= radius + 0.5)).astype(np.uint8)


def _specks(
    g: np.ndarray,
    radii: tuple[int, ...],
    thr: float,
    bright: bool = True,
    min_level: float = 0.0,
    min_background: float = 0.0,
) -> np.ndarray:
    """Pixels that outshine (or, with bright=False, undercut) a whole ring of neighbours by `thr`,
    where that ring is itself nearly uniform (a speck on a locally flat background) and, optionally,
    no darker than `min_background`."""
    out = np.zeros(g.shape, bool)
    for r in radii:
        ring = _ring(r)
        hi, lo = cv2.dilate(g, ring), cv2.erode(g, ring)
        c = g - hi if bright else lo - g
        out |= (c > thr) & ((hi - lo) < 0.6 * c + 0.02) & (lo >= min_background)
    if min_level > 0:
        out &= g > min_level
    return out


def bright_speckles(img: np.ndarray, noise: float | None = None) -> dict[str, float]:
    """Bright speckle density (snow): small bright blobs scattered over flat parts of the frame.

    A speck is a pixel brighter than *every* pixel on a ring around it (a ring-shaped dilation, the
    grey-level hit-or-miss transform) by more than 0.04 and four noise sigmas, with the ring itself
    nearly uniform, and at least 0.35 bright. This rejects texture (grass, gravel, text), whose local maxima sit among other
    bright and dark pixels, and streaks, which continue through the ring. Flakes come in sizes, so
    specks are found at ring radii 2 and 4 on the 512 px copy and again on a 256 px copy (radii 4
    and 8 of the 512 px one). Densities are specks per 10 000 pixels of each copy; `snow_coverage`
    is the percentage of speck pixels, `snow_spread` the share of 4x4 tiles holding any.
    """
    img = _check(img)
    sigma = noise_sigma(img) if noise is None else noise
    fine = to_gray(resize_max(img, STRUCTURE_SIZE))
    coarse = to_gray(resize_max(img, STRUCTURE_SIZE // 2))
    # Flakes are white: a speck must also be bright in absolute terms (noise in the shadows of a dark
    # photo makes specks too, dim ones).
    # And the scene behind it is not black: a white point on black is a star or a lamp, while falling
    # snow is seen against the lit scene it falls in front of.
    m_fine = _specks(fine, (2, 4), max(0.04, 4 * sigma), min_level=0.35, min_background=0.08)
    # Area-halving averages four pixels, halving the noise sigma.
    m_coarse = _specks(coarse, (2, 4), max(0.04, 2 * sigma), min_level=0.35, min_background=0.08)
    n_fine, _, _, cents = cv2.connectedComponentsWithStats(m_fine.astype(np.uint8), connectivity=8)
    n_coarse = cv2.connectedComponents(m_coarse.astype(np.uint8), connectivity=8)[0]
    spread = 0.0
    if n_fine > 1:
        c = cents[1:]
        ty = np.minimum((c[:, 1] / fine.shape[0] * 4).astype(int), 3)
        tx = np.minimum((c[:, 0] / fine.shape[1] * 4).astype(int), 3)
        spread = len(set(zip(ty.tolist(), tx.tolist(), strict=True))) / 16.0
    return {
        "snow_speckle_density": float((n_fine - 1) / fine.size * 1e4),
        "snow_speckle_density_coarse": float((n_coarse - 1) / coarse.size * 1e4),
        "snow_coverage": float(m_fine.mean() * 100),
        "snow_spread": float(spread),
    }


# --------------------------------------------------------------------------- structure: old photos


def _ridges(g: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Bright and dark thin-line strength from Hessian eigenvalues (Frangi-style line measure)."""
    hxx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3)
    hyy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3)
    hxy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3)
    half_tr = (hxx + hyy) / 2
    root = np.sqrt(((hxx - hyy) / 2) ** 2 + hxy**2)
    l1, l2 = half_tr - root, half_tr + root
    bright = np.clip(-l1 - np.abs(l2) - 0.5 * sigma, 0, None)
    dark = np.clip(l2 - np.abs(l1) - 0.5 * sigma, 0, None)
    return bright, dark


# Least brightness of the ring around a bright speck for it to count as dust. Prints and film scans
# have lifted blacks (faded prints, the simulator's and the calibration renderers' old photos all read
# >= 0.15 around their dust), a night or deep-space sky does not.
DUST_MIN_SURROUND = 0.15


def lines_and_dust(img: np.ndarray, noise: float | None = None) -> dict[str, float]:
    """Thin-line (scratch) and dust detection.

    Scratches are thin (a pixel or two), long, nearly straight marks of either polarity. Thin-line
    pixels come from the Hessian line measure (bright or dark ridges); the probabilistic Hough
    transform (Matas et al. 2000) then keeps only straight runs at least 30 % of the short side long,
    which letters, texture and noise do not form. `scratch_density` is the total length of such runs
    in short sides (x10). Dust is compact specks: pixels that stand out from a whole ring of
    neighbours (as for snow, either polarity), off the scratches; `dust_density` is specks per
    10 000 pixels. `point_light_density` counts the bright specks among them whose surround is
    near-black (ring below DUST_MIN_SURROUND): a bright point on black is a point light (a star, a
    lamp) or shadow noise, not dust, which sits on paper or film whose blacks are lifted; the dust
    severity uses the specks that are not point lights. (`dust_density` keeps counting every speck:
    it is an input of the fitted model, which learnt it as such.)
    """
    small = resize_max(_check(img), STRUCTURE_SIZE)
    g = cv2.GaussianBlur(to_gray(small), (0, 0), 0.7)
    sigma = noise_sigma(img) if noise is None else noise
    bright, dark = _ridges(g, sigma)
    ridge = np.maximum(bright, dark)
    thr = max(0.15, 6 * sigma)
    mask = (ridge > thr).astype(np.uint8) * 255
    short = min(g.shape)
    found = cv2.HoughLinesP(
        mask, 1, np.pi / 180, threshold=int(0.2 * short), minLineLength=int(0.3 * short), maxLineGap=2
    )
    total = 0.0
    line_mask = np.zeros_like(mask)
    if found is not None:
        for x1, y1, x2, y2 in np.asarray(found).reshape(-1, 4):
            total += math.hypot(x2 - x1, y2 - y1)
            cv2.line(line_mask, (int(x1), int(y1)), (int(x2), int(y2)), 255, 3)
    thr_speck = max(0.1, 5 * sigma)
    off_lines = line_mask == 0
    bright = _specks(g, (2, 4), thr_speck) & off_lines
    specks = (bright | (_specks(g, (2, 4), thr_speck, bright=False) & off_lines)).astype(np.uint8)
    n = cv2.connectedComponents(specks, connectivity=8)[0] - 1
    points = bright & (_specks(g, (2, 4), thr_speck, min_background=DUST_MIN_SURROUND) == 0)
    n_points = cv2.connectedComponents(points.astype(np.uint8), connectivity=8)[0] - 1
    return {
        "scratch_density": float(total / short * 10.0),
        "dust_density": float(n / g.size * 1e4),
        "point_light_density": float(n_points / g.size * 1e4),
        "thin_line_coverage": float((mask > 0).mean() * 100),
    }


# Least brightness of a quadrant's band above the black level, as a share of the frame's range, for
# its corner-to-band ratio to mean anything: below it the ratio divides noise by noise (a flat grey
# frame read full fall-off).
VIGNETTE_MIN_BAND = 0.02


def vignetting(img: np.ndarray, noise: float | None = None) -> dict[str, float]:
    """Radial light fall-off towards the corners (an old or cheap lens, a print's uneven exposure).

    Fall-off is multiplicative and the same in every corner, so in each quadrant the mean luminance at
    the corner (radius >= 0.85 of the half-diagonal) is divided by that of the same quadrant's band at
    0.6-0.75 (near the frame's edges, whose content is more like the corner's than the centre's);
    `vignette_falloff` is one minus the *largest* of the four ratios: all four
    corners must be darker. Scene content darkens a corner or two (a dark floor, a shadow), rarely all
    four by the same factor. A quadrant whose band is near the black level (a flat or dark frame, a
    black backdrop) cannot show fall-off and counts as none. `noise` is accepted for the
    `fit.ADDED_MEASURES` interface, not used.
    """
    del noise
    g = to_gray(resize_max(_check(img), GLOBAL_SIZE)).astype(np.float64)
    # Fall-off happens in the lens, before a print fades: the lifted black level of a faded print is
    # added after it and would hide it in the ratios, so it is taken off first.
    black, white = np.percentile(g, [1.0, 99.0])
    g = g - float(black)
    floor = VIGNETTE_MIN_BAND * float(white - black)
    if floor <= 0.0:
        return {"vignette_falloff": 0.0}
    h, w = g.shape
    yy = (np.arange(h) - (h - 1) / 2) / (h / 2)
    xx = (np.arange(w) - (w - 1) / 2) / (w / 2)
    r = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2) / math.sqrt(2)
    ratios = []
    for qy in (yy[:, None] < 0, yy[:, None] >= 0):
        for qx in (xx[None, :] < 0, xx[None, :] >= 0):
            quad = qy & qx
            corner = g[quad & (r >= 0.85)]
            inner = g[quad & (r >= 0.6) & (r < 0.75)]
            if corner.size == 0 or inner.size == 0:
                return {"vignette_falloff": 0.0}
            band = float(inner.mean())
            ratios.append(float(corner.mean()) / band if band >= floor else 1.0)
    return {"vignette_falloff": float(max(0.0, 1.0 - max(ratios)))}


# Profile length the grid spectrum is zero-padded to, and the width of the running median that stands
# for the profile's own spectrum around a frequency (+-0.015 cycles per pixel).
_GRID_FFT = 4096
_GRID_BACKGROUND = 121
# Long side of the centre crop the grid spectrum reads: more rows averaged into each column profile
# lift a faint grid above content.
GRID_CROP = 1024


def jpeg_grid_spectrum(img: np.ndarray, noise: float | None = None) -> dict[str, float]:
    """How far a block grid stands out of the image's own structure, in the spectrum.

    Each of the two `difference_profiles` is lifted once per block by block boundaries. Its
    spectrum, divided by its running median (the content's smooth spectrum), peaks at the grid's
    frequency and harmonics; a peak counts only as high as both axes show it (the smaller of the
    two), so a structure periodic along one axis only, such as brick courses or text lines, does not
    count.

    `jpeg_grid_peak` is the strongest peak at a multiple of 1/8 cycle per pixel: JPEG's 8x8 grid.
    Unlike `jpeg_quality`, which needs the exact quantisation steps, it survives what changes pixel
    values without moving the grid (a re-save at another quality, noise or sharpening after the JPEG,
    a tone edit), and it does not depend on the grid's offset, so crops keep it.
    `grid_rescaled_peak` is the strongest peak at a period of 6-40 px off the 8-px harmonics: a JPEG
    grid that a resize stretched or shrank (period 8 / scale), or a codec's 16-px macroblocks.
    1 means no grid; clean photos read a few. `noise` is accepted for the `fit.ADDED_MEASURES`
    interface, not used.
    """
    from scipy.ndimage import median_filter  # ~0.27 s to import; only this measure needs it

    del noise
    g = to_gray(center_crop(_check(img), GRID_CROP))
    if min(g.shape) < 64:
        return {"jpeg_grid_peak": 1.0, "grid_rescaled_peak": 1.0}
    freq = np.fft.rfftfreq(_GRID_FFT)
    harmonic = np.abs(freq * 8.0 - np.round(freq * 8.0)) < 0.024

    def spectrum(profile: np.ndarray) -> np.ndarray:
        # Local mean removed first: the profile's slow swings (sky vs. foliage) would otherwise lift
        # the low frequencies over the whole background estimate.
        p = profile - cv2.blur(profile.reshape(1, -1), (9, 1)).ravel()
        power = np.abs(np.fft.rfft(p * np.hanning(p.size), n=_GRID_FFT)) ** 2
        return power / (median_filter(power, size=_GRID_BACKGROUND, mode="nearest") + 1e-20)

    both = np.minimum(*(spectrum(p) for p in difference_profiles(g)))
    return {
        "jpeg_grid_peak": float(both[harmonic & (freq > 0.1) & (freq < 0.49)].max()),
        "grid_rescaled_peak": float(both[~harmonic & (freq > 1 / 40) & (freq < 1 / 6)].max()),
    }


# ------------------------------------------------------------------------------------------- all


def compute_measures(img: np.ndarray) -> dict[str, float]:
    """All measures for one photo, as a flat name -> number dict (stored in the report)."""
    img = _check(img)
    h, w = img.shape[:2]
    out: dict[str, float] = {"width": float(w), "height": float(h)}
    sigma = noise_sigma(img)
    out["noise_sigma"] = sigma
    out.update(blur_profile(img))
    out["laplacian_var"] = laplacian_variance(img)
    out["detail_ratio"] = detail_ratio(img)
    out.update(jpeg_quality(img))
    out.update(exposure(img))
    out.update(colour(img))
    out.update(dark_channel(img))
    streaks, lines = _rain(img, sigma)
    out.update(streaks)
    out.update(lines)
    out.update(bright_speckles(img, noise=sigma))
    out.update(lines_and_dust(img, noise=sigma))
    out.update(vignetting(img))
    out.update(jpeg_grid_spectrum(img))
    return {k: float(v) for k, v in out.items()}
