import os

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from engine.retrieval.encoders import (EncoderUnavailable, coverage, load_encoder, pool,
                                       to_rgb)
from engine.retrieval.efficientnet_lite import pretrained_lite0

torch.set_num_threads(1)
SKIMAGE = os.path.dirname(skimage.data.__file__)
CATS, ESPRESSO = [281, 282, 283, 284, 285], 967  # ImageNet classes


@pytest.fixture(scope="module")
def default_encoder():
    return load_encoder()


def imagenet_probabilities(model, name):
    image = Image.open(os.path.join(SKIMAGE, name)).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1)[None] / 255
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        return model((x - mean) / std).softmax(-1)[0]


def test_packaged_imagenet_weights_recognise_natural_images():
    model = pretrained_lite0()
    assert imagenet_probabilities(model, "chelsea.png")[CATS].sum() > 0.8
    assert imagenet_probabilities(model, "coffee.png").argmax() == ESPRESSO


def test_default_encoder_gives_tokens_on_a_grid_and_a_pooled_vector(default_encoder):
    cat = np.asarray(Image.open(os.path.join(SKIMAGE, "chelsea.png")).convert("RGB"))
    coffee = np.asarray(Image.open(os.path.join(SKIMAGE, "coffee.png")).convert("RGB"))
    out = default_encoder.encode([cat, coffee, cat[:, ::-1].copy()])
    assert out.grid == (8, 8) and out.tokens.shape == (3, 64, 1280)
    assert out.pooled.shape == (3, 1280)
    torch.testing.assert_close(out.pooled, out.tokens.mean(1))
    unit = torch.nn.functional.normalize(out.pooled, dim=-1)
    # A mirrored cat is closer to the cat than the espresso is.
    assert unit[0] @ unit[2] > unit[0] @ unit[1] + 0.1


def test_rgba_is_composited_over_white():
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[1:3, 2:4] = [10, 20, 30, 255]
    rgb = to_rgb(rgba)
    assert (rgb[0, 0] == 255).all() and (rgb[1, 2] == [10, 20, 30]).all()
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(rgba.astype(np.float32))


def test_coverage_is_the_area_fraction_per_token_cell_and_pool_averages():
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, :4, :4] = True  # exactly the top-left cell of a 2x2 grid
    masks[1, :4, :2] = True  # half of it
    weights = coverage(masks, (2, 2))
    torch.testing.assert_close(weights, torch.tensor([[1.0, 0, 0, 0], [0.5, 0, 0, 0]]))
    tokens = torch.arange(8.0).view(4, 2)
    torch.testing.assert_close(pool(tokens, weights), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    # Non-square masks are padded like the images: a 4x8 mask occupies the middle rows.
    wide = np.ones((1, 4, 8), dtype=bool)
    torch.testing.assert_close(coverage(wide, (2, 2)), torch.full((1, 4), 0.5))
    assert torch.isnan(pool(tokens, torch.zeros(1, 4))).all()


def write_tiny_dinov2(folder):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, patch_size=14, image_size=56)
    Dinov2Model(config).save_pretrained(folder)
    return folder


def write_tiny_clip(folder):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, vocab_size=64, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    letters = "abcdefghijklmnopqrstuvwxyz_"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in letters:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


def test_dinov2_from_a_local_folder(tmp_path):
    encoder = load_encoder(f"dinov2:{write_tiny_dinov2(tmp_path / 'dino')}")
    out = encoder.encode([np.zeros((50, 70, 4), dtype=np.uint8)])
    assert encoder.key.startswith("dinov2:") and encoder.size == 224
    assert out.grid == (16, 16) and out.tokens.shape == (1, 256, 32)
    assert out.pooled.shape == (1, 32) and torch.isfinite(out.tokens).all()


def test_clip_from_a_local_folder_embeds_images_and_text_in_one_space(tmp_path):
    encoder = load_encoder(f"clip:{write_tiny_clip(tmp_path / 'clip')}")
    out = encoder.encode([np.full((40, 40, 3), 128, dtype=np.uint8)])
    assert out.grid == (4, 4) and out.tokens.shape == (1, 16, 16) and out.pooled.shape == (1, 16)
    text = encoder.encode_text(["chair_leg", "mug handle"])
    assert text.shape == (2, 16) and torch.isfinite(text).all()


def test_unreachable_hub_models_name_the_local_folder_option(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EncoderUnavailable, match=r"--encoder dinov2:DIR"):
        load_encoder("dinov2:partsmith-tests/no-such-model")


def test_unknown_encoder_and_text_without_clip_are_clear_errors(default_encoder):
    with pytest.raises(ValueError, match="unknown encoder"):
        load_encoder("resnet")
    with pytest.raises(EncoderUnavailable, match="no text encoder"):
        default_encoder.encode_text(["leg"])
