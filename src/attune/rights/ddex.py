"""Safe, pure parser for DDEX ERN 4.x ``NewReleaseMessage`` files.

The parser turns an ERN file into immutable records (:class:`ErnMessage`, :class:`ErnParty`,
:class:`ErnSoundRecording`); it knows nothing about the database.  It reads the parts of an
ERN 4.3 message that the rights registry needs:

* ``MessageHeader/MessageId`` and ``MessageHeader/MessageSender`` (name, else DPID);
* ``PartyList/Party``: ``PartyReference``, ``PartyName/FullName``, ``PartyId/ISNI`` and
  ``PartyId/IpiNameNumber`` (``ProprietaryId`` and other identifiers are ignored);
* ``ResourceList/SoundRecording``: ``ResourceReference``, the ISRC (ERN 4.2+ puts it under
  ``SoundRecordingEdition/ResourceId/ISRC``, ERN 4.1 under ``ResourceId/ISRC``; both are
  accepted), ``DisplayTitleText`` (else ``DisplayTitle/TitleText``), ``Duration`` (ISO 8601),
  ``DisplayArtist`` (``ArtistPartyReference`` + ``DisplayArtistRole``), ``Contributor``
  (``ContributorPartyReference`` + every ``Role``, ERN 4.3.2's ``Role/Value`` or ERN 4.3's
  plain ``Role``; a ``SpecialContributor`` such as ``GenerativeAI`` has no party and is
  skipped), ``ContainsAI`` (ERN 4.3.2) and
  ``PLine/PLineText``.  Other resources (images, videos, ...) are skipped.

ERN schemas are ``elementFormDefault="unqualified"``: real files have a prefixed root
(``<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43">``) and un-namespaced
children, while some hand-written files use a default namespace instead.  Children are
therefore matched by local name only; the root must be ``NewReleaseMessage`` in an ERN 4.x
namespace (``http://ddex.net/xml/ern/4x``, e.g. ``.../43`` or ``.../432``).

Safety.  Untrusted XML is handled in two passes:

1. the prolog (everything before the root element) is scanned with expat, which never
   fetches anything; any DOCTYPE is refused before its entities could be declared, expanded
   or resolved (XXE, parameter entities, "billion laughs").  DDEX messages never use DTDs.
2. the document is then streamed with lxml ``iterparse`` with ``resolve_entities=False``,
   ``no_network=True``, ``load_dtd=False`` and ``huge_tree=False``; the DOCTYPE check is
   repeated on the lxml side, and processed subtrees are freed as parsing goes, so memory
   stays proportional to one recording rather than to the file.

Files larger than ``max_bytes`` (default 200 MB) are refused.

Problems with the whole file raise :class:`DdexError`.  Problems confined to one recording
(missing or malformed ISRC, a display artist or contributor that references a party absent
from the ``PartyList``, ...) are collected as :class:`RowError` in ``ErnMessage.errors``; such
recordings are left out of ``ErnMessage.recordings`` so the importer can either refuse the
whole file (``errors`` non-empty) or import the valid rows only.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Final, Protocol
from xml.parsers import expat

from lxml import etree

__all__ = [
    "CONTAINS_AI_VALUES",
    "DEFAULT_MAX_BYTES",
    "DdexError",
    "ErnArtist",
    "ErnMessage",
    "ErnParty",
    "ErnSoundRecording",
    "RowError",
    "parse_duration",
    "parse_ern",
    "parse_ern_bytes",
]

DEFAULT_MAX_BYTES: Final[int] = 200 * 1024 * 1024
"""Files larger than this many bytes are refused (override with ``max_bytes=``)."""

CONTAINS_AI_VALUES: Final[frozenset[str]] = frozenset({"All", "Partly", "None"})
"""The DDEX allowed values of ``ContainsAI`` (allowed-value set ``ContainsAI``)."""

ROOT_ELEMENT: Final[str] = "NewReleaseMessage"
ERN4_NAMESPACE: Final[re.Pattern[str]] = re.compile(r"http://ddex\.net/xml/ern/4\d{1,2}")

UNKNOWN_ROLE: Final[str] = "Unknown"
"""Role given to a ``Contributor`` that carries no ``Role`` element (``Role`` is optional)."""

_ISRC_RE: Final[re.Pattern[str]] = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")
_DURATION_RE: Final[re.Pattern[str]] = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?"
)
_CHUNK: Final[int] = 64 * 1024

_ENTITY_REFUSAL: Final[str] = (
    "refused: file contains a DTD with entity declarations (possible XXE / entity-expansion attack)"
)
_EXTERNAL_DTD_REFUSAL: Final[str] = (
    "refused: file contains a DOCTYPE referencing an external DTD (possible XXE attack); "
    "DDEX ERN messages never use DTDs"
)
_DOCTYPE_REFUSAL: Final[str] = (
    "refused: file contains a DOCTYPE declaration; DDEX ERN messages never use DTDs"
)


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


class DdexError(ValueError):
    """The file as a whole cannot be used: unsafe, not XML, not an ERN 4.x message, too big.

    The message names the file, the element (an XPath-like path) and/or the line, and the
    cause, e.g. ``release.xml: line 3: refused: file contains a DTD with entity declarations
    (possible XXE / entity-expansion attack)``.  The parts are also kept as attributes.
    """

    def __init__(
        self, file: str, reason: str, *, element: str | None = None, line: int | None = None
    ) -> None:
        self.file = file
        self.reason = reason
        self.element = element
        self.line = line
        where = file
        if element:
            where += f": {element}"
        if line is not None:
            where += f" (line {line})" if element else f": line {line}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True)
class RowError:
    """A problem confined to one recording (or party): the row can be skipped.

    ``line`` is the source line of the ``SoundRecording`` (or ``Party``) the problem belongs
    to; ``element`` is an XPath-like path to the offending element.
    """

    line: int
    element: str
    reason: str


@dataclass(frozen=True, slots=True)
class ErnParty:
    """A ``PartyList/Party``: ``name`` is ``PartyName/FullName`` ("" when only IDs are given)."""

    reference: str
    name: str
    isni: str | None
    ipi: str | None


@dataclass(frozen=True, slots=True)
class ErnArtist:
    """A party credited on a recording, with its DDEX role value.

    For a display artist ``role`` is the ``DisplayArtistRole`` (``MainArtist``,
    ``FeaturedArtist``, ...); for a contributor it is one ``Role`` (``Composer``,
    ``Lyricist``, ``Producer``, ...).  A ``UserDefined`` role is replaced by its
    ``UserDefinedValue`` attribute when that is given.
    """

    party_reference: str
    role: str


@dataclass(frozen=True, slots=True)
class ErnSoundRecording:
    """A valid ``ResourceList/SoundRecording``.

    ``isrc`` is normalised (upper case, no hyphens); ``contributors`` has one entry per
    (contributor, role) pair; ``contains_ai`` is ``All``/``Partly``/``None`` when the
    ``ContainsAI`` element is present and Python ``None`` otherwise; ``line`` is the source
    line of the ``SoundRecording`` element.
    """

    reference: str
    isrc: str
    title: str
    duration_seconds: int | None
    display_artists: tuple[ErnArtist, ...]
    contributors: tuple[ErnArtist, ...]
    contains_ai: str | None
    p_line: str | None
    line: int


@dataclass(frozen=True, slots=True)
class ErnMessage:
    """A parsed message: valid parties and recordings, plus the per-row problems found."""

    message_id: str
    sender: str | None
    parties: tuple[ErnParty, ...]
    recordings: tuple[ErnSoundRecording, ...]
    errors: tuple[RowError, ...]


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def parse_ern(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ErnMessage:
    """Parse the ERN file at ``path``; raise :class:`DdexError` if it cannot be used."""
    name = str(path)
    try:
        with open(path, "rb") as raw:
            info = os.fstat(raw.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DdexError(name, "not a regular file")
            if info.st_size > max_bytes:
                raise DdexError(name, _too_large(info.st_size, max_bytes))
            return _parse_stream(raw, name, max_bytes)
    except OSError as exc:
        raise DdexError(name, f"cannot read file: {exc.strerror or exc}") from None


def parse_ern_bytes(
    data: bytes, name: str = "<bytes>", *, max_bytes: int = DEFAULT_MAX_BYTES
) -> ErnMessage:
    """Parse an ERN message held in memory; ``name`` is used in error messages."""
    if len(data) > max_bytes:
        raise DdexError(name, _too_large(len(data), max_bytes))
    return _parse_stream(io.BytesIO(data), name, max_bytes)


def parse_duration(text: str) -> int:
    """Convert an ISO 8601 / ``xs:duration`` such as ``PT3M25S`` to whole seconds.

    Days, hours, minutes and (fractional) seconds are accepted; fractions are rounded half
    up.  Years and months are accepted only when zero (``P0Y0M0DT0H3M25S``), as their length
    in seconds is not fixed.  Raise :class:`ValueError` for anything else.
    """
    value = text.strip()
    match = _DURATION_RE.fullmatch(value)
    if match is None or value == "P" or not any(match.groupdict().values()):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT3M25S")
    parts = match.groupdict()
    if int(parts["years"] or 0) or int(parts["months"] or 0):
        raise ValueError(f"{text!r}: durations in years or months have no fixed length")
    seconds = Decimal((parts["seconds"] or "0").replace(",", "."))
    whole = (
        int(parts["days"] or 0) * 86400
        + int(parts["hours"] or 0) * 3600
        + int(parts["minutes"] or 0) * 60
    )
    return whole + int(seconds.to_integral_value(rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------------------------
# Reading: size bound, prolog scan, streaming parse
# --------------------------------------------------------------------------------------------


def _too_large(size: int, limit: int) -> str:
    return f"refused: file is larger than the {limit:,}-byte limit ({size:,} bytes or more)"


class _Source(Protocol):
    """What the reader needs from a source: a binary file object, ``io.BytesIO``, ..."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, /) -> object: ...


class _TooLarge(Exception):
    pass


class _BoundedReader:
    """A file-like ``read`` that fails once more than ``limit`` bytes have been read.

    Guards against files that grow after the size check, and non-regular sources.
    """

    def __init__(self, raw: _Source, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._count = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit + 1 - self._count
        data = self._raw.read(size)
        self._count += len(data)
        if self._count > self._limit:
            raise _TooLarge(self._count)
        return data

    def rewind(self) -> None:
        self._raw.seek(0)
        self._count = 0


class _StopScan(Exception):
    """The root element was reached: the prolog holds no DOCTYPE."""


class _Refused(Exception):
    def __init__(self, reason: str, line: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def _scan_prolog(reader: _BoundedReader, name: str) -> None:
    """Refuse any DOCTYPE before lxml sees the file; stop at the root element.

    expat reports the DOCTYPE as soon as its name is read and each entity declaration as
    soon as it is complete, before any reference to it could be expanded; external
    entities are never fetched (no ``ExternalEntityRefHandler`` resolution, parameter
    entity parsing off).
    """
    parser = expat.ParserCreate()

    def start_doctype(
        _name: str, system_id: str | None, public_id: str | None, _internal: int
    ) -> None:
        if system_id or public_id:
            raise _Refused(_EXTERNAL_DTD_REFUSAL, parser.CurrentLineNumber)

    def entity_decl(*_args: object) -> None:
        raise _Refused(_ENTITY_REFUSAL, parser.CurrentLineNumber)

    def end_doctype() -> None:
        raise _Refused(_DOCTYPE_REFUSAL, parser.CurrentLineNumber)

    def external_entity_ref(*_args: object) -> int:
        raise _Refused(_ENTITY_REFUSAL, parser.CurrentLineNumber)

    def start_element(_name: str, _attrs: object) -> None:
        raise _StopScan

    parser.StartDoctypeDeclHandler = start_doctype
    parser.EntityDeclHandler = entity_decl
    parser.UnparsedEntityDeclHandler = entity_decl
    parser.EndDoctypeDeclHandler = end_doctype
    parser.ExternalEntityRefHandler = external_entity_ref
    parser.StartElementHandler = start_element
    try:
        while True:
            chunk = reader.read(_CHUNK)
            parser.Parse(chunk, not chunk)
            if not chunk:
                break
    except _StopScan:
        return
    except _Refused as exc:
        raise DdexError(name, exc.reason, line=exc.line) from None
    except expat.ExpatError as exc:
        reason = f"not well-formed XML: {expat.ErrorString(exc.code)}"
        raise DdexError(name, reason, line=exc.lineno) from None
    raise DdexError(name, "not well-formed XML: no root element", line=1)  # pragma: no cover


def _parse_stream(raw: _Source, name: str, max_bytes: int) -> ErnMessage:
    reader = _BoundedReader(raw, max_bytes)
    try:
        _scan_prolog(reader, name)
        reader.rewind()
        builder = _Builder(name)
        events = etree.iterparse(
            reader,
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            recover=False,
        )
        try:
            for event, element in events:
                builder.feed(event, element)
        except etree.XMLSyntaxError as exc:
            line = exc.lineno if exc.lineno else None
            raise DdexError(name, f"not well-formed XML: {exc.msg}", line=line) from None
        return builder.finish()
    except _TooLarge as exc:
        raise DdexError(name, _too_large(int(exc.args[0]), max_bytes)) from None


# --------------------------------------------------------------------------------------------
# Element helpers (lxml ships no type information: elements are ``Any``)
# --------------------------------------------------------------------------------------------


def _local(element: Any) -> str:
    tag = element.tag
    if not isinstance(tag, str):  # comment / PI (normally removed by the parser)
        return ""
    return tag.rpartition("}")[2]


def _children(element: Any, name: str) -> Iterator[Any]:
    for child in element:
        if _local(child) == name:
            yield child


def _child(element: Any, name: str) -> Any | None:
    return next(_children(element, name), None)


def _text(element: Any | None) -> str:
    if element is None:
        return ""
    return "".join(str(part) for part in element.itertext()).strip()


def _line(element: Any) -> int:
    line = element.sourceline
    return int(line) if line is not None else 0


def _first_text(element: Any, *path: str) -> str:
    """Text of the first element at ``path`` (every step may repeat) that has text."""
    if not path:
        return _text(element)
    for child in _children(element, path[0]):
        found = _first_text(child, *path[1:])
        if found:
            return found
    return ""


def _preferred(elements: list[Any]) -> Any | None:
    """The ``IsDefault="true"`` element among repeated ones, else the first."""
    for element in elements:
        if (element.get("IsDefault") or "").strip().lower() in ("true", "1"):
            return element
    return elements[0] if elements else None


def _role_value(element: Any) -> str:
    """A role's value; ERN 4.3.2 nests a contributor's ``Role`` value in ``Role/Value``."""
    nested = _child(element, "Value")
    element = element if nested is None else nested
    value = _text(element)
    if value == "UserDefined":
        user_value = (element.get("UserDefinedValue") or "").strip()
        if user_value:
            return user_value
    return value


# --------------------------------------------------------------------------------------------
# Building the message
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PendingRecording:
    """A recording read from the file, waiting for party references to be checked."""

    recording: ErnSoundRecording | None
    problems: tuple[RowError, ...]
    party_refs: tuple[tuple[str, str], ...]  # (party reference, element path)
    line: int
    path: str
    reference: str


class _Builder:
    """Consumes ``iterparse`` events, keeping only what it needs, freeing the rest."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stack: list[str] = []
        self._root = ROOT_ELEMENT
        self._message_id: str | None = None
        self._sender: str | None = None
        self._parties: list[ErnParty] = []
        self._party_refs: set[str] = set()
        self._party_count = 0
        self._recording_count = 0
        self._pending: list[_PendingRecording] = []
        self._errors: list[RowError] = []

    # -- event dispatch -----------------------------------------------------------------------

    def feed(self, event: str, element: Any) -> None:
        if event == "start":
            if not self._stack:
                self._check_root(element)
            self._stack.append(_local(element))
            return
        depth = len(self._stack)
        local = self._stack[-1]
        if depth == 3 and self._stack[1] == "PartyList" and local == "Party":
            self._read_party(element)
            self._free(element)
        elif depth == 3 and self._stack[1] == "ResourceList":
            if local == "SoundRecording":
                self._read_recording(element)
            self._free(element)
        elif depth == 2:
            if local == "MessageHeader":
                self._read_header(element)
            self._free(element)
        self._stack.pop()

    @staticmethod
    def _free(element: Any) -> None:
        element.clear(keep_tail=False)
        parent = element.getparent()
        if parent is not None:
            while element.getprevious() is not None:
                del parent[0]

    def _check_root(self, element: Any) -> None:
        line = _line(element)
        # Belt and braces: the prolog scan has already refused any DOCTYPE.
        docinfo = element.getroottree().docinfo
        dtd = docinfo.internalDTD
        if dtd is not None and list(dtd.iterentities()):
            raise DdexError(self._name, _ENTITY_REFUSAL, line=line)
        if docinfo.doctype or dtd is not None:
            raise DdexError(self._name, _DOCTYPE_REFUSAL, line=line)
        qname = etree.QName(element)
        namespace = qname.namespace or ""
        local = str(qname.localname)
        if local != ROOT_ELEMENT:
            raise DdexError(
                self._name,
                f"root element is {local!r}, expected an ERN {ROOT_ELEMENT}",
                element=f"/{local}",
                line=line,
            )
        if not ERN4_NAMESPACE.fullmatch(namespace):
            shown = namespace or "no namespace"
            raise DdexError(
                self._name,
                f"unsupported namespace {shown!r}: expected DDEX ERN 4.x "
                "(http://ddex.net/xml/ern/43, http://ddex.net/xml/ern/432, ...)",
                element=f"/{local}",
                line=line,
            )
        self._root = local

    # -- header, parties ----------------------------------------------------------------------

    def _read_header(self, header: Any) -> None:
        path = f"/{self._root}/MessageHeader"
        message_id = _text(_child(header, "MessageId"))
        if not message_id:
            raise DdexError(
                self._name, "missing MessageId", element=f"{path}/MessageId", line=_line(header)
            )
        self._message_id = message_id
        sender = _child(header, "MessageSender")
        if sender is not None:
            name = _first_text(sender, "PartyName", "FullName")
            self._sender = name or _first_text(sender, "PartyId") or None

    def _read_party(self, party: Any) -> None:
        self._party_count += 1
        path = f"/{self._root}/PartyList/Party[{self._party_count}]"
        line = _line(party)
        reference = _text(_child(party, "PartyReference"))
        if not reference:
            self._errors.append(RowError(line, f"{path}/PartyReference", "missing PartyReference"))
            return
        if reference in self._party_refs:
            self._errors.append(
                RowError(line, f"{path}/PartyReference", f"duplicate PartyReference {reference!r}")
            )
            return
        isni = _first_text(party, "PartyId", "ISNI").replace(" ", "").upper()
        ipi = _first_text(party, "PartyId", "IpiNameNumber").replace(" ", "")
        self._party_refs.add(reference)
        self._parties.append(
            ErnParty(
                reference=reference,
                name=_first_text(party, "PartyName", "FullName"),
                isni=isni or None,
                ipi=ipi or None,
            )
        )

    # -- recordings ---------------------------------------------------------------------------

    def _read_recording(self, recording: Any) -> None:
        self._recording_count += 1
        base = f"/{self._root}/ResourceList/SoundRecording[{self._recording_count}]"
        line = _line(recording)
        problems: list[RowError] = []
        refs: list[tuple[str, str]] = []

        def problem(relative: str, reason: str) -> None:
            problems.append(RowError(line, f"{base}/{relative}", reason))

        reference = _text(_child(recording, "ResourceReference"))
        if not reference:
            problem("ResourceReference", "missing ResourceReference")

        isrc = _find_isrc(recording)
        normalised = isrc.upper().replace("-", "").replace(" ", "")
        if not isrc:
            problem("SoundRecordingEdition/ResourceId/ISRC", "missing ISRC")
        elif not _ISRC_RE.fullmatch(normalised):
            problem("SoundRecordingEdition/ResourceId/ISRC", f"malformed ISRC {isrc!r}")

        title = _text(_preferred(list(_children(recording, "DisplayTitleText"))))
        display_title = _preferred(list(_children(recording, "DisplayTitle")))
        if not title and display_title is not None:
            title = _text(_child(display_title, "TitleText"))
        if not title:
            problem("DisplayTitleText", "missing title (no DisplayTitleText or DisplayTitle)")

        duration: int | None = None
        duration_text = _text(_child(recording, "Duration"))
        if duration_text:
            try:
                duration = parse_duration(duration_text)
            except ValueError as exc:
                problem("Duration", str(exc))

        display_artists: list[ErnArtist] = []
        for index, artist in enumerate(_children(recording, "DisplayArtist"), start=1):
            path = f"DisplayArtist[{index}]"
            party = _text(_child(artist, "ArtistPartyReference"))
            role_element = _child(artist, "DisplayArtistRole")
            role = _role_value(role_element) if role_element is not None else ""
            if not party:
                problem(f"{path}/ArtistPartyReference", "missing ArtistPartyReference")
            elif not role:
                problem(f"{path}/DisplayArtistRole", "missing DisplayArtistRole")
            else:
                display_artists.append(ErnArtist(party, role))
                refs.append((party, f"{base}/{path}/ArtistPartyReference"))

        contributors: list[ErnArtist] = []
        for index, contributor in enumerate(_children(recording, "Contributor"), start=1):
            path = f"Contributor[{index}]"
            party = _text(_child(contributor, "ContributorPartyReference"))
            if not party and _child(contributor, "SpecialContributor") is not None:
                continue  # e.g. GenerativeAI: ERN 4.3.2 gives it no party in the registry's sense
            if not party:
                problem(f"{path}/ContributorPartyReference", "missing ContributorPartyReference")
                continue
            roles = [_role_value(role) for role in _children(contributor, "Role")]
            roles = [role for role in roles if role] or [UNKNOWN_ROLE]
            contributors.extend(ErnArtist(party, role) for role in roles)
            refs.append((party, f"{base}/{path}/ContributorPartyReference"))

        contains_ai: str | None = None
        contains_ai_element = _child(recording, "ContainsAI")
        if contains_ai_element is not None:
            contains_ai = _text(contains_ai_element)
            if contains_ai not in CONTAINS_AI_VALUES:
                reason = f"ContainsAI must be All, Partly or None, not {contains_ai!r}"
                problem("ContainsAI", reason)

        p_line = _first_text(recording, "SoundRecordingEdition", "PLine", "PLineText")
        p_line = p_line or _first_text(recording, "PLine", "PLineText")

        built: ErnSoundRecording | None = None
        if not problems:
            built = ErnSoundRecording(
                reference=reference,
                isrc=normalised,
                title=title,
                duration_seconds=duration,
                display_artists=tuple(display_artists),
                contributors=tuple(contributors),
                contains_ai=contains_ai,
                p_line=p_line or None,
                line=line,
            )
        self._pending.append(
            _PendingRecording(built, tuple(problems), tuple(refs), line, base, reference)
        )

    # -- result -------------------------------------------------------------------------------

    def finish(self) -> ErnMessage:
        if self._message_id is None:
            raise DdexError(
                self._name,
                "missing MessageHeader/MessageId",
                element=f"/{self._root}/MessageHeader",
            )
        recordings: list[ErnSoundRecording] = []
        errors = list(self._errors)
        seen_references: set[str] = set()
        for pending in self._pending:
            problems = list(pending.problems)
            for party, path in pending.party_refs:
                if party not in self._party_refs:
                    problems.append(
                        RowError(pending.line, path, f"references party {party!r} not in PartyList")
                    )
            if pending.reference in seen_references:
                problems.append(
                    RowError(
                        pending.line,
                        f"{pending.path}/ResourceReference",
                        f"duplicate ResourceReference {pending.reference!r}",
                    )
                )
            if pending.reference:
                seen_references.add(pending.reference)
            recording = pending.recording
            if problems or recording is None:
                errors.extend(problems)
                continue
            recordings.append(recording)
        errors.sort(key=lambda error: error.line)
        return ErnMessage(
            message_id=self._message_id,
            sender=self._sender,
            parties=tuple(self._parties),
            recordings=tuple(recordings),
            errors=tuple(errors),
        )


def _find_isrc(recording: Any) -> str:
    """ISRC from ``SoundRecordingEdition/ResourceId`` (ERN 4.2+) or ``ResourceId`` (4.1)."""
    return (
        _first_text(recording, "SoundRecordingEdition", "ResourceId", "ISRC")
        or _first_text(recording, "ResourceId", "ISRC")
        or _first_text(recording, "SoundRecordingId", "ISRC")
    )
