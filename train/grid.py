"""Labelled image grids a person can judge: one row per pair, one labelled column per image kind."""
import os

import torch
from PIL import Image, ImageDraw, ImageFont

from datasets.images import to_pil

GAP = 2            # white pixels between cells
CELL_PX = 128      # cells are enlarged (nearest neighbour: the pixels the model made) to this side at least
LABEL_PX = 20      # height of the label row


def label_font():
    """PIL's built-in font at a readable size (a bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=14)
    except TypeError:   # Pillow < 10.1
        return ImageFont.load_default()


def grid_image(columns, cell_px=CELL_PX, background=(255, 255, 255)) -> Image.Image:
    """A grid from [(label, [B, 3, H, W] tensor in [-1, 1] or a single [3, H, W] shown on every row), ...]."""
    rows = max(c.shape[0] for _, c in columns if c.ndim == 4)
    side = max(cell_px, next(c for _, c in columns).shape[-1])
    width = len(columns) * side + (len(columns) + 1) * GAP
    grid = Image.new("RGB", (width, LABEL_PX + rows * side + (rows + 1) * GAP), background)
    draw, font = ImageDraw.Draw(grid), label_font()
    ink = (0, 0, 0) if sum(background) > 380 else (255, 255, 255)
    for col, (label, images) in enumerate(columns):
        x = GAP + col * (side + GAP)
        draw.text((x + side // 2, LABEL_PX // 2), label, fill=ink, font=font, anchor="mm")
        for row in range(rows):
            image = images[row] if images.ndim == 4 else images
            cell = to_pil(image).resize((side, side), Image.Resampling.NEAREST)
            grid.paste(cell, (x, LABEL_PX + GAP + row * (side + GAP)))
    return grid


def save_grid(path: str, cond: torch.Tensor, generated: torch.Tensor, target: torch.Tensor) -> str:
    """Write a labelled PNG grid, rows of input | generated | true, from [B, 3, H, W] tensors in [-1, 1]; atomic."""
    grid = grid_image([("input", cond), ("generated", generated), ("true", target)])
    tmp = f"{path}.tmp.png"
    grid.save(tmp)
    os.replace(tmp, path)
    return path
