"""A user's own model by reference (``package.module:callable``) and by entry point: built,
given what lfubench reads, dry-run, listed, and every mistake one line naming the model."""

from __future__ import annotations

import sys

import pytest
import torch

from lfubench import models
from lfubench.bench.complexity import count_params
from lfubench.cli.zoo import zoo_rows

from .user_model_helpers import write_distribution, write_user_module


@pytest.fixture
def mod(tmp_path, monkeypatch):
    """The name of a fresh user module in a folder on ``sys.path``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return write_user_module(tmp_path)


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_a_reference_builds_the_model_with_what_lfubench_reads(mod):
    torch.manual_seed(0)
    net = models.create_model(f"{mod}:build", in_channels=4, num_classes=2, base_width=6)
    assert type(net).__name__ == "TinyNet"
    assert (net.in_channels, net.num_classes, net.model_name) == (4, 2, f"{mod}:build")
    assert net.config == {"name": f"{mod}:build", "in_channels": 4, "num_classes": 2, "base_width": 6}
    assert count_params(net) == (4 * 9 * 6 + 6) + 2 * 6 + (6 * 2 + 2)
    again = models.create_model(**net.config)  # the record's config rebuilds it
    assert [p.shape for p in again.parameters()] == [p.shape for p in net.parameters()]
    assert models.model_source(f"{mod}:build") == "user" and models.is_reference(f"{mod}:build")
    assert models.model_arguments(f"{mod}:build") == ("in_channels", "num_classes", "base_width")
    assert models.model_arguments(f"{mod}:build_any") is None  # **kwargs: takes any
    assert f"{mod}:build" not in models.list_models()  # a reference is not listed


def test_defaults_fill_in_channels_and_num_classes_only_where_the_callable_has_none(mod):
    net = models.create_model(f"{mod}:build_any", base_width=2)
    assert net.config == {"name": f"{mod}:build_any", **models._registry.USER_DEFAULTS, "base_width": 2}
    assert (net.in_channels, net.num_classes) == (3, 3)


def test_a_module_in_the_working_folder_is_importable(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    name = write_user_module(tmp_path)
    net = models.create_model(f"{name}:build", num_classes=5)
    assert net.num_classes == 5 and sys.path[0] == str(tmp_path)


@pytest.mark.parametrize("ref,kwargs,message", [
    ("no_such_module_xyz:build", {},
     "model 'no_such_module_xyz:build': module 'no_such_module_xyz' not found"),
    ("{mod}:missing", {}, "model '{mod}:missing': module '{mod}' has no 'missing'"),
    ("{mod}:NOT_CALLABLE", {}, "'NOT_CALLABLE' of module '{mod}' is not callable (a int)"),
    ("{mod}:build", {"depth": 3}, "it takes no argument 'depth'; its arguments: in_channels, num_classes, "
                                  "base_width"),
    ("{mod}:build_raises", {"base_width": 2},
     "model '{mod}:build_raises': building it raised ValueError: base_width 2 is too narrow"),
    ("{mod}:build_without_io", {}, "its callable must take in_channels and num_classes (the dataset sets "
                                   "them); it takes base_width"),
    ("{mod}:build_number", {}, "its callable returned a int, not a torch.nn.Module"),
    ("{mod}:build_own_config", {}, "has an attribute 'config' of its own (a list)"),
    ("{mod}", {}, "unknown model '{mod}'"),
    ("{mod}:build:x", {}, "'{mod}:build:x' is not a reference package.module:callable"),
])
def test_each_bad_reference_is_one_line_naming_it(mod, ref, kwargs, message):
    with pytest.raises(models.ModelConfigError) as err:
        models.create_model(ref.format(mod=mod), **kwargs)
    assert message.format(mod=mod) in one_line(err)


def test_a_module_that_fails_to_import_is_named_with_its_error(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    missing_dep = write_user_module(tmp_path, "import no_such_dependency_xyz\n")
    broken = write_user_module(tmp_path, "def build(:\n")
    with pytest.raises(models.UserModelError) as err:
        models.create_model(f"{missing_dep}:build")
    assert (f"importing module {missing_dep!r} failed: ModuleNotFoundError: No module named "
            "'no_such_dependency_xyz'") in one_line(err)
    with pytest.raises(models.UserModelError) as err:
        models.create_model(f"{broken}:build")
    assert f"importing module {broken!r} failed: SyntaxError" in one_line(err)
    assert err.value.name == f"{broken}:build" and err.value.detail.startswith("importing module")


def test_check_forward_passes_a_good_model_and_keeps_its_mode(mod):
    for fn in ("build", "build_heads"):
        net = models.create_model(f"{mod}:{fn}", num_classes=2).train()
        models.check_forward(net, (3, 32, 48))
        assert net.training
        net.eval()
        models.check_forward(net, (3, 16, 16))
        assert not net.training


@pytest.mark.parametrize("fn,message", [
    ("build_halves", "forward of a 1x3x32x32 input returned 1x2x16x16; expected 1x2x32x32 (batch, "
                     "num_classes 2, the input's height and width)"),
    ("build_bad_heads", "forward_heads of a 1x3x32x32 input returned 1x1x32x32; expected 1x2x32x32 (batch, "
                        "num_classes 2, the input's height and width)"),
    ("build_tuple", "forward must return one logits tensor 1x2x32x32, got a tuple (deep-supervision heads "
                    "go in forward_heads)"),
])
def test_check_forward_names_a_wrong_output(mod, fn, message):
    net = models.create_model(f"{mod}:{fn}", num_classes=2)
    with pytest.raises(models.UserModelError) as err:
        models.check_forward(net, (3, 32, 32))
    assert one_line(err) == f"model '{mod}:{fn}': {message}"


def test_check_forward_names_a_forward_that_raises(mod):
    net = models.create_model(f"{mod}:build", num_classes=2)
    with pytest.raises(models.UserModelError) as err:
        models.check_forward(net, (4, 32, 32))  # the model takes 3 channels
    assert one_line(err).startswith(f"model '{mod}:build': forward of a 1x4x32x32 input raised "
                                    "RuntimeError: ")


def test_an_entry_point_model_is_listed_built_and_shown_in_the_zoo(tmp_path, monkeypatch, caplog):
    name = write_user_module(tmp_path)
    write_distribution(tmp_path, {"fake_tiny": f"{name}:build_heads", "unet": f"{name}:build",
                                  "fake_missing": f"{name}:missing"})
    assert "fake_tiny" not in models.list_models()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert {"fake_tiny", "fake_missing"} <= set(models.list_models("fake_*"))
    assert "entry point 'unet'" in caplog.text and "already taken" in caplog.text
    assert models.model_source("fake_tiny") == "user" and models.model_source("unet") == "lfubench"
    net = models.create_model("fake_tiny", num_classes=2, base_width=5)
    assert type(net).__name__ == "HeadsNet" and net.model_name == "fake_tiny"
    assert net.config == {"name": "fake_tiny", "in_channels": 3, "num_classes": 2, "base_width": 5}
    assert len(net.forward_heads(torch.zeros(1, 3, 16, 16))) == 2
    with pytest.raises(models.UserModelError) as err:
        models.create_model("fake_missing")
    assert one_line(err) == f"model 'fake_missing': module '{name}' has no 'missing' ({tmp_path / name}.py)"
    (row,) = zoo_rows((3, 32, 32), "fake_tiny")
    built = models.create_model("fake_tiny")
    assert row == {"model": "fake_tiny", "source": "user", "in_channels": 3, "num_classes": 3,
                   "params": count_params(built), "gmacs": row["gmacs"], "note": ""}
    assert row["gmacs"] > 0
    assert zoo_rows((3, 32, 32), "lfunet_deng2023")[0]["source"] == "authors' preset"
