"""The shipped bundle's generation for a fixed seed stays exactly what it was when the
reference was recorded: refactors of the pipeline must not change outputs.

A deliberate change of the outputs (new weights, a new extraction) records a new reference:
    python tests/test_generation_reference.py
"""

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).with_name("data") / "generation_reference.npz"
BUNDLE, LIBRARY = ROOT / "models" / "partrag", ROOT / "models" / "library"
IMAGE = ROOT / "engine" / "demo_inputs" / "chair.png"
REQUEST = dict(parts=3, steps=4, seed=7)


def bundle_fingerprint() -> str:
    """Hash of every weight file the generation reads."""
    digest = hashlib.sha256()
    for path in sorted(BUNDLE.rglob("*")) + sorted(LIBRARY.rglob("*")):
        if path.is_file() and path.suffix in {".safetensors", ".bin", ".json", ".npz"}:
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def generate() -> dict[str, np.ndarray]:
    import torch

    from engine.pipelines.decode import ExtractSettings
    from engine.pipelines.partrag import PartRAGPipeline

    torch.set_num_threads(1)
    pipeline = PartRAGPipeline.from_pretrained(BUNDLE, "cpu", library=LIBRARY,
                               extract=ExtractSettings(resolution=64, coarse_resolution=16))
    image = np.asarray(Image.open(IMAGE).convert("RGBA"))
    generation = pipeline(image, REQUEST["parts"], steps=REQUEST["steps"], seed=REQUEST["seed"])
    arrays = {"labels": np.array([p.label for p in generation.parts]),
              "retrieved": np.array([h["asset_id"] for h in generation.retrieved])}
    for p in generation.parts:
        arrays[f"vertices_{p.index}"] = p.vertices
        arrays[f"faces_{p.index}"] = p.faces
        arrays[f"transform_{p.index}"] = p.transform
    return arrays


def test_generation_matches_the_recorded_reference():
    recorded = np.load(REFERENCE)
    if str(recorded["fingerprint"]) != bundle_fingerprint():
        pytest.fail("models/partrag or models/library changed since the reference was recorded; "
                    "if the new outputs are intended, run: python tests/test_generation_reference.py")
    made = generate()
    assert sorted(made) == sorted(k for k in recorded.files if k != "fingerprint")
    for key, value in made.items():
        assert np.array_equal(value, recorded[key]), key


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    arrays = generate()
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, fingerprint=np.array(bundle_fingerprint()), **arrays)
    print(f"recorded {REFERENCE} ({len(arrays)} arrays)")
