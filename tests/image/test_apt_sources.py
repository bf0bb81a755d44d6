"""Parsing the host's apt sources (both formats) and picking the Debian archive entries."""

from pathlib import Path

import pytest

from harness.image.apt_sources import (
    ArchiveSource,
    parse_deb822,
    parse_one_line,
    read_host_sources,
    select_archive_sources,
)
from harness.image.errors import SourcesError

DEB822 = """\
Types: deb
# a comment inside the stanza
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no
"""

NODESOURCE = """\
Types: deb
URIs: https://deb.nodesource.example/node_20.x
Suites: nodistro
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/nodesource.gpg
"""

DEBIAN_KEY = "/usr/share/keyrings/debian-archive-keyring.gpg"
ONE_LINE = f"""\
# comment
deb [arch=amd64 signed-by={DEBIAN_KEY}] http://m.example/debian bookworm main
deb http://plain.example/debian bookworm-updates main non-free  # trailing comment
deb-src http://m.example/debian bookworm main
deb [signed-by=/usr/share/keyrings/cloud.gpg] https://cloud.example/apt cloud-sdk-bookworm main
deb [broken http://x.example bookworm main
"""


def test_deb822_stanzas_fields_and_enabled() -> None:
    entries = parse_deb822(DEB822, "debian.sources")
    assert len(entries) == 4
    first = entries[0]
    assert first.uris == ("http://mirror.example/debian",)
    assert first.suites == ("bookworm", "bookworm-updates")
    assert first.components == ("main", "contrib")
    assert first.signed_by.endswith("debian-archive-keyring.gpg")
    assert first.origin == "debian.sources:1"
    assert entries[2].types == ("deb-src",)
    assert entries[3].enabled is False


def test_deb822_inline_key_continuation_lines() -> None:
    text = (
        "Types: deb\nURIs: http://a/debian\nSuites: sid\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP\n .\n -----END PGP\n"
    )
    (entry,) = parse_deb822(text)
    assert entry.signed_by.startswith("-----BEGIN PGP")


def test_one_line_options_comments_and_bad_lines() -> None:
    entries = parse_one_line(ONE_LINE, "sources.list")
    assert [e.types for e in entries] == [("deb",), ("deb",), ("deb-src",), ("deb",)]
    assert entries[0].signed_by.endswith("debian-archive-keyring.gpg")
    assert entries[0].uris == ("http://m.example/debian",)
    assert entries[1].components == ("main", "non-free")
    assert entries[1].signed_by == ""
    assert entries[1].origin == "sources.list:3"


def test_selection_keeps_debian_entries_and_skips_third_party() -> None:
    entries = parse_deb822(DEB822) + parse_deb822(NODESOURCE) + parse_one_line(ONE_LINE)
    chosen = select_archive_sources(
        entries, ["bookworm", "bookworm-updates", "bookworm-security"], ["main"]
    )
    uris = {(s.uri, s.suite) for s in chosen}
    assert uris == {
        ("http://mirror.example/debian", "bookworm"),
        ("http://mirror.example/debian", "bookworm-updates"),
        ("http://mirror.example/debian-security", "bookworm-security"),
        ("http://m.example/debian", "bookworm"),
        ("http://plain.example/debian", "bookworm-updates"),
    }
    assert not any("nodesource" in s.uri or "cloud" in s.uri for s in chosen)
    assert not any("disabled" in s.uri for s in chosen)


def test_suite_missing_from_host_is_taken_from_the_main_archive() -> None:
    chosen = select_archive_sources(parse_deb822(DEB822), ["sid"], ["main"])
    assert chosen == [
        ArchiveSource(
            "http://mirror.example/debian",
            "sid",
            ("main",),
            "/usr/share/keyrings/debian-archive-keyring.gpg",
        )
    ]
    assert chosen[0].derived


def test_no_debian_source_is_a_clear_error() -> None:
    with pytest.raises(SourcesError, match="no Debian archive entry"):
        select_archive_sources(parse_deb822(NODESOURCE), ["bookworm"], ["main"])


def test_one_line_output_restricts_the_architecture() -> None:
    source = ArchiveSource("http://m.example/debian", "bookworm", ("main",), "/k.gpg")
    assert (
        source.one_line("arm64")
        == "deb [arch=arm64 signed-by=/k.gpg] http://m.example/debian bookworm main"
    )


def test_read_host_sources_reads_only_what_apt_reads(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://a.example/debian bookworm main\n")
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(DEB822)
    (parts / "extra.list").write_text("deb http://b.example/debian bookworm main\n")
    (parts / "nodesource.sources.disabled-by-farm").write_text(NODESOURCE)
    (parts / "old.list.save").write_text("deb http://c.example/debian bookworm main\n")
    uris = [uri for entry in read_host_sources(tmp_path) for uri in entry.uris]
    assert "http://a.example/debian" in uris
    assert "http://b.example/debian" in uris
    assert "http://mirror.example/debian" in uris
    assert not any("nodesource" in uri or "c.example" in uri for uri in uris)


def test_trixie_suites_come_from_the_entries_of_the_same_kind() -> None:
    """A bookworm host: trixie and trixie-updates from the main archive, trixie-security from
    the URI that serves bookworm-security."""
    chosen = select_archive_sources(
        parse_deb822(DEB822), ["trixie", "trixie-updates", "trixie-security"], ["main"]
    )
    assert [(s.uri, s.suite) for s in chosen] == [
        ("http://mirror.example/debian", "trixie"),
        ("http://mirror.example/debian", "trixie-updates"),
        ("http://mirror.example/debian-security", "trixie-security"),
    ]
    assert all(s.derived for s in chosen)
