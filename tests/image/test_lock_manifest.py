"""Pins (images/<arch>.lock) and the build manifest."""

import hashlib
import json
from pathlib import Path

import pytest

from harness.image import lock, manifest
from harness.image.errors import RecipeError
from harness.image.recipe import IMAGES_DIR, load_recipe

PIN = lock.Pin(
    name="busybox-static",
    version="1:1.35.0-4+deb12u1+b1",
    architecture="arm64",
    filename="pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_arm64.deb",
    size=822236,
    sha256="a" * 64,
)


def _lock() -> lock.Lock:
    return lock.Lock(
        arch="aarch64",
        architecture="arm64",
        requested=("linux-image-arm64", "busybox-static"),
        kernel="linux-image-6.1.0-56-arm64",
        pins=(PIN,),
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "aarch64.lock"
    lock.save(_lock(), path)
    assert lock.load(path) == _lock()
    assert "--refresh-pins" in path.read_text()


def test_deb_name_escapes_the_epoch_colon() -> None:
    assert PIN.deb_name == "busybox-static_1%3a1.35.0-4+deb12u1+b1_arm64.deb"


def test_missing_lock_is_none(tmp_path: Path) -> None:
    assert lock.load(tmp_path / "none.lock") is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text.replace('sha256 = "' + "a" * 64, 'sha256 = "xyz'),
        lambda text: text.replace("format = 1", "format = 99"),
        lambda text: text.replace("[[package]]", "[[package"),
        lambda text: text.replace('name = "busybox-static"\n', ""),
    ],
)
def test_damaged_lock_names_the_refresh_command(tmp_path: Path, damage) -> None:
    path = tmp_path / "aarch64.lock"
    lock.save(_lock(), path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(RecipeError, match="--refresh-pins"):
        lock.load(path)


def test_lock_must_match_the_recipe_package_list(tmp_path: Path) -> None:
    pinned = _lock()
    lock.check_matches(pinned, ("busybox-static", "linux-image-arm64"), tmp_path / "x.lock")
    with pytest.raises(RecipeError, match=r"added: zlib1g; removed: none.*--refresh-pins"):
        lock.check_matches(
            pinned, ("linux-image-arm64", "busybox-static", "zlib1g"), tmp_path / "x.lock"
        )


def test_checked_in_lock_matches_the_checked_in_recipe() -> None:
    for recipe_file in IMAGES_DIR.glob("*.toml"):
        recipe = load_recipe(recipe_file.stem)
        pinned = lock.load(recipe.lock_path)
        assert pinned is not None, f"{recipe.lock_path} is missing: run --refresh-pins"
        requested = (recipe.apt.kernel_metapackage, *recipe.apt.packages)
        lock.check_matches(pinned, requested, recipe.lock_path)
        assert pinned.kernel in {pin.name for pin in pinned.pins}


def test_manifest_round_trip_and_output_check(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"k" * 10)
    digest = hashlib.sha256(b"k" * 10).hexdigest()
    data = {"arch": "aarch64", "files": {"vmlinuz": {"size": 10, "sha256": digest}}}
    manifest.write(tmp_path / "manifest", data)
    read = manifest.read(tmp_path / "manifest")
    assert read is not None
    assert read["format"] == manifest.MANIFEST_FORMAT
    assert manifest.outputs_intact(read, tmp_path)
    (tmp_path / "vmlinuz").write_bytes(b"k" * 9 + b"K")  # same size, other bytes
    assert manifest.output_problems(read, tmp_path) == [
        "vmlinuz does not match its sha256 in the manifest"
    ]
    (tmp_path / "vmlinuz").write_bytes(b"k" * 11)
    assert manifest.output_problems(read, tmp_path) == ["vmlinuz is 11 bytes, the manifest says 10"]
    (tmp_path / "vmlinuz").unlink()
    assert manifest.output_problems(read, tmp_path) == ["vmlinuz is missing"]
    assert not manifest.outputs_intact(read, tmp_path)


def test_manifest_of_another_format_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "manifest").write_text(json.dumps({"format": 0}))
    assert manifest.read(tmp_path / "manifest") is None
    (tmp_path / "manifest").write_text("{not json")
    assert manifest.read(tmp_path / "manifest") is None
