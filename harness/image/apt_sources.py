"""Find the Debian archive in the host's own apt sources.

The builder must never hard-code a mirror: a machine may only reach a local mirror or a proxy,
and its apt sources already say which. We read ``/etc/apt/sources.list`` and
``/etc/apt/sources.list.d/*.list`` (one-line format) and ``*.sources`` (deb822), the same files
apt reads, and keep the entries that serve the recipe's suites from the Debian archive.

Third-party repositories (nodesource, cloud-sdk, ...) are skipped: they are signed by their own
keyring and do not carry Debian's arm64 packages. An entry is taken when its suite is one the
recipe asks for, it has one of the recipe's components, and it is signed by the Debian archive
keyring or names no keyring at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.image.errors import SourcesError

log = logging.getLogger(__name__)

APT_ETC = Path("/etc/apt")
DEBIAN_KEYRING_MARK = "debian-archive"


@dataclass(frozen=True)
class SourceEntry:
    """One apt source stanza (deb822) or line (one-line format)."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""
    enabled: bool = True
    origin: str = ""


@dataclass(frozen=True)
class ArchiveSource:
    """A source the private apt configuration uses: one URI, one suite."""

    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: str = ""
    derived: bool = field(default=False, compare=False)

    def one_line(self, architecture: str) -> str:
        """This source in apt's one-line format, restricted to ``architecture``."""
        options = [f"arch={architecture}"]
        if self.signed_by:
            options.append(f"signed-by={self.signed_by}")
        return f"deb [{' '.join(options)}] {self.uri} {self.suite} {' '.join(self.components)}"


def parse_one_line(text: str, origin: str = "") -> list[SourceEntry]:
    """Parse the classic ``deb [opts] uri suite [component...]`` format."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        options: dict[str, str] = {}
        rest = rest.strip()
        if rest.startswith("["):
            closing = rest.find("]")
            if closing < 0:
                log.warning("%s:%d: unterminated [options], line skipped", origin, number)
                continue
            for option in rest[1:closing].split():
                key, _, value = option.partition("=")
                options[key.lower()] = value
            rest = rest[closing + 1 :]
        words = rest.split()
        if len(words) < 2:
            log.warning("%s:%d: expected 'uri suite [components]', line skipped", origin, number)
            continue
        entries.append(
            SourceEntry(
                types=(kind,),
                uris=(words[0],),
                suites=(words[1],),
                components=tuple(words[2:]),
                signed_by=options.get("signed-by", ""),
                origin=f"{origin}:{number}",
            )
        )
    return entries


def parse_deb822(text: str, origin: str = "") -> list[SourceEntry]:
    """Parse the deb822 ``.sources`` format (stanzas of ``Key: value`` fields)."""
    entries = []
    for number, stanza in deb822_stanzas(text):
        fields = {key.lower(): value for key, value in stanza.items()}
        if not fields.get("uris") or not fields.get("suites"):
            log.warning("%s:%d: stanza without URIs/Suites skipped", origin, number)
            continue
        entries.append(
            SourceEntry(
                types=tuple(fields.get("types", "deb").split()),
                uris=tuple(fields["uris"].split()),
                suites=tuple(fields["suites"].split()),
                components=tuple(fields.get("components", "").split()),
                signed_by=fields.get("signed-by", "").strip(),
                enabled=fields.get("enabled", "yes").strip().lower() not in ("no", "false", "0"),
                origin=f"{origin}:{number}",
            )
        )
    return entries


def deb822_stanzas(text: str) -> Iterable[tuple[int, dict[str, str]]]:
    """(first line number, fields) of each deb822 stanza; shared with apt-cache output."""
    fields: dict[str, str] = {}
    start = 0
    key = ""
    for number, raw in enumerate([*text.splitlines(), ""], 1):
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield start, fields
            fields, key = {}, ""
            continue
        if raw[0] in " \t" and key:
            fields[key] += "\n" + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            continue
        if not fields:
            start = number
        key = name.strip()
        fields[key] = value.strip()


def read_host_sources(etc: Path = APT_ETC) -> list[SourceEntry]:
    """Every source entry apt on this host would read (files with other suffixes are ignored,
    as apt ignores them)."""
    entries: list[SourceEntry] = []
    main = etc / "sources.list"
    if main.is_file():
        entries += parse_one_line(main.read_text(encoding="utf-8", errors="replace"), str(main))
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
            if path.suffix == ".list":
                entries += parse_one_line(text, str(path))
            elif path.suffix == ".sources":
                entries += parse_deb822(text, str(path))
    return entries


def is_third_party(entry: SourceEntry) -> bool:
    """True when the entry is signed by a keyring other than Debian's archive keyring."""
    signed_by = entry.signed_by
    return bool(signed_by) and DEBIAN_KEYRING_MARK not in signed_by


def select_archive_sources(
    entries: Sequence[SourceEntry], suites: Sequence[str], components: Sequence[str]
) -> list[ArchiveSource]:
    """The (uri, suite) pairs to fetch ``suites`` from, in the recipe's suite order.

    A suite the host does not list (``trixie`` for riscv64 on a bookworm host) is taken from
    the URIs of the host's Debian entries for a suite of the same kind (see
    :func:`suite_kind`): the archive that serves ``bookworm-security`` serves
    ``trixie-security`` too, and the main archive serves every release and its ``-updates``.
    """
    usable = [
        entry
        for entry in entries
        if entry.enabled
        and "deb" in entry.types
        and not is_third_party(entry)
        and not any(uri.startswith("cdrom:") for uri in entry.uris)
    ]
    for entry in entries:
        if entry not in usable:
            log.debug("apt source %s skipped (disabled, deb-src, cdrom or third-party)", entry)
    wanted_components = set(components)
    chosen: list[ArchiveSource] = []
    missing = []
    for suite in suites:
        found = False
        for entry in usable:
            if suite not in entry.suites or not wanted_components & set(entry.components):
                continue
            for uri in entry.uris:
                source = ArchiveSource(uri, suite, tuple(components), entry.signed_by)
                if source not in chosen:
                    chosen.append(source)
                found = True
        if not found:
            missing.append(suite)
    for suite in missing:
        derived = _derived_sources(usable, suite, components)
        if not derived:
            raise SourcesError(_no_source_message(entries, suites, components))
        for source in derived:
            if source not in chosen:
                log.info("apt: suite %s not in the host's sources, using %s", suite, source.uri)
                chosen.append(source)
    return chosen


def suite_kind(suite: str) -> str:
    """What a suite is besides its release: ``""`` (a release), ``-updates``, ``-security``."""
    _, dash, kind = suite.partition("-")
    return dash + kind


def _derived_sources(
    usable: Sequence[SourceEntry], suite: str, components: Sequence[str]
) -> list[ArchiveSource]:
    """Sources for ``suite`` from the host's entries for suites of the same kind."""
    kind = suite_kind(suite)
    found = []
    for entry in usable:
        if not set(components) & set(entry.components):
            continue
        if any(suite_kind(listed) == kind for listed in entry.suites):
            for uri in entry.uris:
                found.append(ArchiveSource(uri, suite, tuple(components), entry.signed_by, True))
    return found


def _no_source_message(
    entries: Sequence[SourceEntry], suites: Sequence[str], components: Sequence[str]
) -> str:
    seen = "; ".join(f"{e.origin} {' '.join(e.uris)} {' '.join(e.suites)}" for e in entries)
    return (
        f"the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/) have no "
        f"Debian archive entry for suites {', '.join(suites)} with components "
        f"{', '.join(components)}; add one (e.g. a deb822 stanza with URIs: <your Debian "
        f"mirror>, Suites: {suites[0]}, Components: {' '.join(components)}, Signed-By: "
        f"/usr/share/keyrings/debian-archive-keyring.gpg). Entries seen: {seen or 'none'}"
    )
