"""A public PartCrafter folder (model_index.json, transformer/, vae/, scheduler/,
image_encoder_dinov2/, feature_extractor_dinov2/) runs through PartRAGPipeline with retrieval
off: the DiT is conditioned on the folder's own DINOv2 last_hidden_state (CLS included), as
the public weights were trained. The folder is parity-A's random networks plus a tiny random
Dinov2Model."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.pipelines.decode import ExtractSettings
from engine.render.image_prep import frame_object, to_rgba
from engine.pipelines.partrag import UNLABELLED, PartRAGPipeline

PARITY = Path("/work/shared/reference/parity-A")
FAST = ExtractSettings(resolution=32, coarse_resolution=16)
# What a BitImageProcessor for DINOv2 ships: resize the short side to 256, crop 224².
PROCESSOR = {"image_processor_type": "BitImageProcessor", "do_convert_rgb": True,
             "do_resize": True, "size": {"shortest_edge": 256}, "resample": 3,
             "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
             "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
             "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
PATCH = 14


def write_partcrafter_folder(folder: Path, hidden_size: int | None = None) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    for sub in ("transformer", "vae", "scheduler"):
        shutil.copytree(PARITY / sub, folder / sub)
    width = json.loads((folder / "transformer" / "config.json").read_text())["cross_attention_dim"]
    torch.manual_seed(0)
    dinov2 = Dinov2Model(Dinov2Config(hidden_size=hidden_size or width, num_hidden_layers=2,
                                      num_attention_heads=2, mlp_ratio=2, patch_size=PATCH,
                                      image_size=224))
    dinov2.save_pretrained(folder / "image_encoder_dinov2")
    (folder / "feature_extractor_dinov2").mkdir()
    (folder / "feature_extractor_dinov2" / "preprocessor_config.json").write_text(
        json.dumps(PROCESSOR))
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "PartCrafterPipeline",
         "transformer": ["partcrafter", "PartCrafterDiTModel"],
         "vae": ["triposg", "TripoSGVAEModel"],
         "scheduler": ["scheduler", "RectifiedFlowScheduler"],
         "image_encoder_dinov2": ["transformers", "Dinov2Model"],
         "feature_extractor_dinov2": ["transformers", "BitImageProcessor"]}))
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_partcrafter_folder(tmp_path_factory.mktemp("public") / "partcrafter")


@pytest.fixture(scope="module")
def pipeline(folder):
    return PartRAGPipeline.from_pretrained(folder, extract=FAST)


def object_image() -> np.ndarray:
    """An RGBA object (two coloured blocks) on a transparent, off-centre canvas."""
    image = np.zeros((120, 160, 4), np.uint8)
    image[30:90, 40:100] = (200, 60, 40, 255)
    image[50:70, 100:130] = (30, 90, 210, 255)
    return image


def expected_context(folder: Path, image: np.ndarray) -> torch.Tensor:
    """Dinov2Model(...).last_hidden_state of the framed object over white, preprocessed by
    hand as PROCESSOR says (short side -> 256 bicubic, centre crop 224, ImageNet stats)."""
    from transformers import Dinov2Model

    framed, _ = frame_object(to_rgba(image))
    rgb = np.where(framed[..., 3:] == 255, framed[..., :3], 255).astype(np.uint8)
    assert framed.shape[0] == framed.shape[1]  # square: the short side is either side
    resized = np.asarray(Image.fromarray(rgb).resize((256, 256), Image.BICUBIC), np.float32)
    crop = resized[16:240, 16:240] / 255.0
    pixels = (crop - PROCESSOR["image_mean"]) / np.array(PROCESSOR["image_std"])
    pixels = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None]
    model = Dinov2Model.from_pretrained(folder / "image_encoder_dinov2").eval()
    with torch.no_grad():
        return model(pixel_values=pixels).last_hidden_state[0]


def test_public_folder_generates_parts_on_its_dinov2_tokens(folder, pipeline):
    seen = []
    hook = pipeline.transformer.register_forward_pre_hook(
        lambda module, args: seen.append(args[2].clone()))
    try:
        generation = pipeline(object_image(), 3, steps=2, seed=0, top_k=0)
    finally:
        hook.remove()
    assert [p.index for p in generation.parts] == [0, 1, 2]
    assert all(p.label == UNLABELLED for p in generation.parts)
    assert all(p.vertices.ndim == 2 and p.faces.max() < len(p.vertices) for p in generation.parts)
    assert generation.retrieved == [] and generation.params["top_k"] == 0

    expected = expected_context(folder, object_image())
    assert expected.shape == (1 + (224 // PATCH) ** 2, 32)  # 257 tokens: CLS + 16×16 patches
    assert len(seen) == 2  # one guided DiT call per step, batch [unconditional, conditional]
    for context in seen:
        assert context.shape == (6, 257, 32)
        assert torch.all(context[:3] == 0)
        for row in context[3:]:
            assert torch.allclose(row, expected, atol=1e-4)


def test_retrieval_is_refused_and_off_by_default(pipeline):
    assert pipeline.default_top_k == 0
    with pytest.raises(ValueError, match="no retrieval weights or bank.*use top-k 0"):
        pipeline(object_image(), 2, steps=1, top_k=1)
    assert pipeline(object_image(), 1, steps=1).params["top_k"] == 0


def test_a_folder_without_its_image_encoder_is_refused(folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken, ignore=shutil.ignore_patterns("image_encoder_dinov2"))
    with pytest.raises(FileNotFoundError, match="image_encoder_dinov2/"):
        PartRAGPipeline.from_pretrained(broken)
    wrong = write_partcrafter_folder(tmp_path / "wrong", hidden_size=16)
    with pytest.raises(ValueError, match="16-channel tokens.*cross_attention_dim is 32"):
        PartRAGPipeline.from_pretrained(wrong)


def test_generate_cli_on_a_public_folder(folder, tmp_path, capsys):
    image = tmp_path / "object.png"
    Image.fromarray(object_image()).save(image)
    # One part: the CLI extracts at the full 128³, slow on a random field's noisy surface.
    command = ["generate", str(image), "--parts", "1", "--model", str(folder), "--steps", "1"]
    # Without --top-k a folder that cannot retrieve runs at 0; asking for retrieval is an error.
    assert main(command + ["--out", str(tmp_path / "default")]) == 0
    parts = json.loads((tmp_path / "default" / "parts.json").read_text())
    assert len(parts["parts"]) == 1 and parts["params"]["top_k"] == 0
    assert {"part_00.glb", "object.glb"} <= {p.name for p in (tmp_path / "default").iterdir()}
    capsys.readouterr()
    assert main(command + ["--top-k", "2", "--out", str(tmp_path / "k2")]) == 2
    assert "no retrieval weights" in capsys.readouterr().err
