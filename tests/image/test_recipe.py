"""The recipe files under images/ and their validation."""

import tomllib
from pathlib import Path

import pytest

from harness.image.errors import RecipeError
from harness.image.recipe import IMAGES_DIR, available_arches, load_recipe, parse_recipe


def test_aarch64_recipe() -> None:
    recipe = load_recipe("aarch64")
    assert recipe.apt.architecture == "arm64"
    assert {"virtio_mmio", "virtio_blk", "virtio_rng"} <= set(recipe.kernel.modules)
    assert recipe.lock_path == IMAGES_DIR / "aarch64.lock"
    assert [p.name for p in recipe.python.packages] == ["crcmod", "ecdsa", "six"]
    assert not recipe.merged_usr


def test_riscv64_recipe_takes_trixie_with_merged_usr() -> None:
    recipe = load_recipe("riscv64")
    assert recipe.apt.architecture == "riscv64"
    assert recipe.apt.suites == ("trixie", "trixie-updates", "trixie-security")
    assert recipe.apt.kernel_metapackage == "linux-image-riscv64"
    assert recipe.python.version == "3.13"
    assert recipe.merged_usr and recipe.busybox.path == "usr/bin/busybox"
    assert {"virtio_mmio", "virtio_blk", "virtio_rng"} <= set(recipe.kernel.modules)
    crcmod = next(p for p in recipe.python.packages if p.name == "crcmod")
    assert crcmod.require == ("crcmod._crcfunext",)


def test_recipes_say_nothing_about_how_qemu_boots() -> None:
    """The QEMU command line per arch lives in harness.vm.arch only."""
    for arch in available_arches():
        assert "boot" not in tomllib.loads((IMAGES_DIR / f"{arch}.toml").read_text())


def test_unknown_arch_lists_the_known_ones() -> None:
    with pytest.raises(RecipeError, match=r"known: .*aarch64"):
        load_recipe("pdp11")
    assert "aarch64" in available_arches()


def _data() -> dict:
    return tomllib.loads((IMAGES_DIR / "aarch64.toml").read_text())


def test_missing_key_is_named() -> None:
    data = _data()
    del data["python"]["stdlib"]
    with pytest.raises(RecipeError, match=r"python\.stdlib"):
        parse_recipe(data, Path("aarch64.toml"))


def test_wrong_type_is_named() -> None:
    data = _data()
    data["kernel"]["modules"] = "virtio_blk"
    with pytest.raises(RecipeError, match=r"kernel\.modules must be a list"):
        parse_recipe(data, Path("aarch64.toml"))


def test_arch_must_match_the_file_name() -> None:
    with pytest.raises(RecipeError, match=r"riscv64\.toml"):
        parse_recipe(_data(), Path("riscv64.toml"))


def test_merged_usr_must_be_a_boolean() -> None:
    data = {**_data(), "merged_usr": "yes"}
    with pytest.raises(RecipeError, match=r"merged_usr must be true or false"):
        parse_recipe(data, Path("aarch64.toml"))
