"""Image metrics for the turned view: PSNR, SSIM and foreground-mask IoU on [0, 1] RGB arrays."""
import numpy as np
from skimage.metrics import structural_similarity

PSNR_CAP_DB = 100.0
# A pixel is foreground when some channel differs from the background colour by more than this (on [0, 1]):
# 0.1 is ~25 grey levels, above JPEG/resize noise on a flat background and below any rendered shading.
MASK_THRESHOLD = 0.1


def check_finite(*images):
    """Refuse images holding NaN or inf: every metric below would score them as a match (min(cap, nan) is the cap)."""
    for image in images:
        if not np.isfinite(image).all():
            raise ValueError("cannot score an image holding NaN or inf values (the model or its options are broken)")


def psnr(pred, target):
    """Peak signal-to-noise ratio in dB for images in [0, 1], capped at PSNR_CAP_DB (equal images)."""
    check_finite(pred, target)
    mse = float(np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * np.log10(1.0 / mse))


def ssim(pred, target):
    """Mean structural similarity of two HxWx3 images in [0, 1] (scikit-image, uniform 7x7 window)."""
    check_finite(pred, target)
    win = min(7, *pred.shape[:2])
    win -= 1 - win % 2                       # the window must be odd and fit the image
    value = structural_similarity(pred, target, channel_axis=-1, data_range=1.0, win_size=win)
    return float(np.clip(value, 0.0, 1.0))    # SSIM can dip below 0 for anti-correlated images; report [0, 1]


def foreground_mask(image, background_rgb):
    """Boolean HxW mask of pixels whose colour differs from the background by more than MASK_THRESHOLD."""
    bg = np.asarray(background_rgb, dtype=np.float64).reshape(1, 1, 3)
    if bg.max() > 1.0:
        bg = bg / 255.0
    return np.abs(image.astype(np.float64) - bg).max(axis=-1) > MASK_THRESHOLD


def mask_iou(pred, target, background_rgb):
    """Intersection over union of the two images' foreground masks; 1.0 when both are empty."""
    check_finite(pred, target)
    a, b = foreground_mask(pred, background_rgb), foreground_mask(target, background_rgb)
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def all_metrics(pred, target, background_rgb):
    """The three metrics of one generated view against its target, as a dict."""
    return {"psnr": psnr(pred, target), "ssim": ssim(pred, target),
            "mask_iou": mask_iou(pred, target, background_rgb)}


def to_unit_hwc(tensor):
    """A [3,H,W] tensor in [-1, 1] as an HxWx3 float64 array in [0, 1] (what the metrics take)."""
    return ((tensor.detach().cpu().double().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
