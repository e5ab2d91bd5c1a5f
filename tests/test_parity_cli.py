import argparse
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from engine.models.parity import add_parity, check_fixture
from parity_fixture import FIXTURE, needs_fixture

pytestmark = needs_fixture
OUTPUTS = ["dit_out", "ditb_out", "sample_out_latents", "vae_dec_out_logits", "vae_out_moments"]


def run_cli(*argv) -> int:
    parser = argparse.ArgumentParser()
    add_parity(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["parity", *map(str, argv)])
    return args.run(args)


def copy_models(folder: Path) -> None:
    """The fixture's model folders, without its io.safetensors."""
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("io.safetensors"),
                    dirs_exist_ok=True)


def test_fixture_passes_with_every_output_checked(capsys):
    assert run_cli(FIXTURE) == 0
    out = capsys.readouterr().out
    for name in OUTPUTS:
        assert f"{name:24s} max abs error" in out
    assert "not checked yet" not in out


def test_check_fixture_reports_every_reference_output():
    errors = check_fixture(FIXTURE)
    assert set(errors) == set(OUTPUTS)
    assert all(error <= 1e-4 for error in errors.values())


def test_unchecked_outputs_are_named(tmp_path, capsys):
    copy_models(tmp_path)
    io = load_file(FIXTURE / "io.safetensors")
    io["extra_out"] = io["dit_out"].clone()
    save_file(io, tmp_path / "io.safetensors")
    assert run_cli(tmp_path) == 0
    assert "not checked yet: extra_out" in capsys.readouterr().out


def test_a_wrong_reference_output_fails(tmp_path, capsys):
    copy_models(tmp_path)
    io = load_file(FIXTURE / "io.safetensors")
    io["vae_dec_out_logits"][0, 3, 0] += 0.01
    save_file(io, tmp_path / "io.safetensors")
    assert run_cli(tmp_path) == 1
    assert "vae_dec_out_logits       max abs error 1.000e-02  FAIL" in capsys.readouterr().out
    assert run_cli(tmp_path, "--tolerance", "0.02") == 0


def test_a_folder_that_is_not_a_fixture_is_refused(tmp_path, capsys):
    assert run_cli(tmp_path) == 2
    assert "not a parity fixture" in capsys.readouterr().err


def test_a_fixture_missing_a_model_folder_is_refused(tmp_path, capsys):
    shutil.copytree(FIXTURE / "vae", tmp_path / "vae")
    shutil.copy(FIXTURE / "io.safetensors", tmp_path)
    assert run_cli(tmp_path) == 2
    assert "transformer is not a model folder: config.json not found" in capsys.readouterr().err
