"""The recipe files under images/ and their validation."""

import tomllib
from pathlib import Path

import pytest

from harness.image import BootProfile
from harness.image.errors import RecipeError
from harness.image.recipe import IMAGES_DIR, available_arches, load_recipe, parse_recipe


def test_aarch64_recipe_boot_profile() -> None:
    recipe = load_recipe("aarch64")
    assert recipe.boot == BootProfile(
        qemu_binary="qemu-system-aarch64",
        machine="virt",
        cpu="cortex-a57",
        console="ttyAMA0",
        kernel_args=("console=ttyAMA0", "quiet", "panic=-1", "cryptomgr.notests"),
        virtio_suffix="device",
    )
    assert recipe.apt.architecture == "arm64"
    assert {"virtio_mmio", "virtio_blk", "virtio_rng"} <= set(recipe.kernel.modules)
    assert recipe.lock_path == IMAGES_DIR / "aarch64.lock"
    assert [p.name for p in recipe.python.packages] == ["crcmod", "ecdsa", "six"]


def test_unknown_arch_lists_the_known_ones() -> None:
    with pytest.raises(RecipeError, match=r"known: .*aarch64"):
        load_recipe("pdp11")
    assert "aarch64" in available_arches()


def _data() -> dict:
    return tomllib.loads((IMAGES_DIR / "aarch64.toml").read_text())


def test_missing_key_is_named() -> None:
    data = _data()
    del data["boot"]["cpu"]
    with pytest.raises(RecipeError, match=r"boot\.cpu"):
        parse_recipe(data, Path("aarch64.toml"))


def test_wrong_type_is_named() -> None:
    data = _data()
    data["kernel"]["modules"] = "virtio_blk"
    with pytest.raises(RecipeError, match=r"kernel\.modules must be a list"):
        parse_recipe(data, Path("aarch64.toml"))


def test_arch_must_match_the_file_name() -> None:
    with pytest.raises(RecipeError, match=r"riscv64\.toml"):
        parse_recipe(_data(), Path("riscv64.toml"))
