"""AI-disclosure credits: DDEX ERN 4.3.2 ``ContainsAI`` per release and recording, as JSON and ERN.

``ContainsAI`` (``All``/``Partly``/``None``) is stored per release and per sound recording and
``AiContribution`` per contributor; ``Undeclared`` is a fourth state meaning "nobody said",
written to ERN as the element's absence (absence of an AI credit is not a claim of no AI).
A generative-AI contributor is written as ERN's ``SpecialContributor`` ``GenerativeAI`` (which
the XSD offers instead of ``ContributorPartyReference``), its model named by a
``DisplayCredits`` pointing at its ``Party``; its ``AiContribution`` defaults to ``All`` as DDEX
defines.  Facets (vocals, instrumentation, composition, lyrics, post-production) are not DDEX
values and ERN 4.3.2 has no extension point (no ``xs:any``), so they travel in JSON (and C2PA)
only.

The ERN output was validated with lxml against the official ERN 4.3.2 XSD
(``release-notification.xsd``, DDEX, SCOW v0.9.11 250618, with ``allowed-value-sets.xsd``
AvsVersionId 9), as copied in github.com/alecsavvy/ddex-go ``xsd/`` (commit 5e9e272,
2025-09-15); ``tests/test_credits_ern.py`` repeats it when ``ATTUNE_ERN_XSD`` names that
file.  The fragment holds every required child it has data for, in the XSD's order; a
message's producer must still add the catalogue elements the XSD requires and credits do not
hold: ``DisplayArtistName``, ``DisplayArtist`` and ``Duration`` in each ``SoundRecording``
(and an ID in ``SoundRecordingEdition/ResourceId`` when there is no ISRC); ``ReleaseType``,
``ReleaseId``, ``DisplayArtistName``, ``DisplayArtist``, ``ReleaseLabelReference`` and
``DisplayGenre`` in the ``Release``.  References must fit the XSD's ID patterns (``P…`` for
parties, ``A…`` for recordings, ``R…`` for releases) and roles be AVS ``ContributorRole``
values.  Untrusted XML is parsed with defusedxml: DTDs and entities are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast, get_args
from xml.etree.ElementTree import Element, SubElement, indent, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

__all__ = [
    "CONTAINS_AI",
    "FACETS",
    "ContainsAI",
    "ContributorCredit",
    "CreditsError",
    "Facet",
    "RecordingCredits",
    "ReleaseCredits",
    "from_ern",
    "from_json",
    "overall",
    "to_ern_fragment",
    "to_json",
]

ContainsAI = Literal["All", "Partly", "None", "Undeclared"]
Facet = Literal["vocals", "instrumentation", "composition", "lyrics", "post-production"]
CONTAINS_AI: Final[tuple[str, ...]] = get_args(ContainsAI)
FACETS: Final[tuple[str, ...]] = get_args(Facet)
EXTENSION_NS: Final[str] = "urn:attune:ai-credits:1"
JSON_SCHEMA: Final[str] = "attune.ai-credits/1"
_DECLARED: Final[frozenset[str]] = frozenset({"All", "Partly", "None"})


class CreditsError(ValueError):
    """Credits that cannot be used; the message names the field (a JSON path or ERN element)."""


def _check_value(value: object, where: str) -> ContainsAI:
    """``value`` as a ContainsAI state, or a CreditsError naming ``where``."""
    if value not in CONTAINS_AI:
        allowed = ", ".join(CONTAINS_AI)
        raise CreditsError(f"{where}: must be one of {allowed}, not {value!r}")
    return cast(ContainsAI, value)


@dataclass(frozen=True, slots=True)
class ContributorCredit:
    """A contributor to a recording: party, DDEX roles and its ``AiContribution``.

    ``generative_ai`` marks the contributor as a generative-AI system rather than a person; its
    ``Undeclared`` contribution becomes ``All``, DDEX's default for such a contributor.
    """

    party_reference: str
    name: str
    roles: tuple[str, ...]
    ai_contribution: ContainsAI = "Undeclared"
    generative_ai: bool = False

    def __post_init__(self) -> None:
        """Refuse empty references and unknown AiContribution values; apply DDEX's default."""
        if not self.party_reference:
            raise CreditsError("contributor.party_reference: must not be empty")
        _check_value(self.ai_contribution, f"contributor {self.party_reference}.ai_contribution")
        if self.generative_ai and self.ai_contribution == "Undeclared":
            object.__setattr__(self, "ai_contribution", "All")


@dataclass(frozen=True, slots=True)
class RecordingCredits:
    """AI disclosure of one sound recording: ContainsAI, its facets and the contributors.

    ``facets`` maps each facet to a state; facets not given are ``Undeclared``.  A recording
    declared ``None`` cannot have a facet that is ``All`` or ``Partly``, and one whose every
    facet is ``None`` cannot be declared ``All``.
    """

    reference: str
    title: str
    isrc: str | None
    contains_ai: ContainsAI
    facets: Mapping[Facet, ContainsAI] = field(default_factory=dict)
    contributors: tuple[ContributorCredit, ...] = ()

    def __post_init__(self) -> None:
        """Validate states, facet names and the consistency of facets with ContainsAI."""
        where = f"recording {self.reference or '?'}"
        if not self.reference:
            raise CreditsError("recording.reference: must not be empty")
        _check_value(self.contains_ai, f"{where}.contains_ai")
        for name, value in self.facets.items():
            if name not in FACETS:
                raise CreditsError(f"{where}.facets: unknown facet {name!r} ({', '.join(FACETS)})")
            _check_value(value, f"{where}.facets.{name}")
        used = {n for n, v in self.facets.items() if v in ("All", "Partly")}
        if self.contains_ai == "None" and used:
            raise CreditsError(
                f"{where}.contains_ai: None contradicts AI facets {', '.join(sorted(used))}"
            )
        declared = [self.facets.get(cast(Facet, n), "Undeclared") for n in FACETS]
        if self.contains_ai == "All" and all(v == "None" for v in declared):
            raise CreditsError(f"{where}.contains_ai: All contradicts every facet being None")
        complete = {cast(Facet, n): v for n, v in zip(FACETS, declared, strict=True)}
        object.__setattr__(self, "facets", complete)


@dataclass(frozen=True, slots=True)
class ReleaseCredits:
    """AI disclosure of a release: its own ContainsAI and its recordings' credits."""

    reference: str
    title: str
    contains_ai: ContainsAI
    recordings: tuple[RecordingCredits, ...]

    def __post_init__(self) -> None:
        """Validate the release state and refuse duplicate recording references."""
        _check_value(self.contains_ai, f"release {self.reference}.contains_ai")
        seen: set[str] = set()
        for recording in self.recordings:
            if recording.reference in seen:
                raise CreditsError(f"release {self.reference}: duplicate {recording.reference!r}")
            seen.add(recording.reference)


def overall(states: Iterable[ContainsAI]) -> ContainsAI:
    """A release's ContainsAI from its recordings': equal states carry over, mixes are Partly.

    Any Undeclared recording leaves the release Undeclared: a release cannot claim ``None``
    (or ``All``) for a part nobody declared.
    """
    values = set(states)
    if not values or "Undeclared" in values:
        return "Undeclared"
    if len(values) == 1:
        return values.pop()
    return "Partly"


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def to_json(release: ReleaseCredits) -> str:
    """Credits as a JSON document (schema ``attune.ai-credits/1``)."""
    document = {
        "schema": JSON_SCHEMA,
        "release": {
            "reference": release.reference,
            "title": release.title,
            "contains_ai": release.contains_ai,
            "recordings": [
                {
                    "reference": rec.reference,
                    "title": rec.title,
                    "isrc": rec.isrc,
                    "contains_ai": rec.contains_ai,
                    "facets": dict(rec.facets),
                    "contributors": [
                        {
                            "party_reference": c.party_reference,
                            "name": c.name,
                            "roles": list(c.roles),
                            "ai_contribution": c.ai_contribution,
                            "generative_ai": c.generative_ai,
                        }
                        for c in rec.contributors
                    ],
                }
                for rec in release.recordings
            ],
        },
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def from_json(text: str | bytes) -> ReleaseCredits:
    """Parse credits JSON, naming the JSON path of the first problem found."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CreditsError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("schema") != JSON_SCHEMA:
        raise CreditsError(f"$.schema: expected {JSON_SCHEMA!r}")
    rel = _object(document.get("release"), "$.release")
    recordings = []
    for i, raw in enumerate(_list(rel.get("recordings"), "$.release.recordings")):
        path = f"$.release.recordings[{i}]"
        rec = _object(raw, path)
        contributors = []
        for j, craw in enumerate(_list(rec.get("contributors", []), f"{path}.contributors")):
            cpath = f"{path}.contributors[{j}]"
            con = _object(craw, cpath)
            contributors.append(
                ContributorCredit(
                    party_reference=_text(con.get("party_reference"), f"{cpath}.party_reference"),
                    name=_text(con.get("name", ""), f"{cpath}.name"),
                    roles=tuple(
                        _text(r, f"{cpath}.roles") for r in _list(con.get("roles"), cpath)
                    ),
                    ai_contribution=_check_value(
                        con.get("ai_contribution", "Undeclared"), f"{cpath}.ai_contribution"
                    ),
                    generative_ai=bool(con.get("generative_ai", False)),
                )
            )
        facets = _object(rec.get("facets", {}), f"{path}.facets")
        isrc = rec.get("isrc")
        recordings.append(
            RecordingCredits(
                reference=_text(rec.get("reference"), f"{path}.reference"),
                title=_text(rec.get("title", ""), f"{path}.title"),
                isrc=None if isrc is None else _text(isrc, f"{path}.isrc"),
                contains_ai=_check_value(rec.get("contains_ai"), f"{path}.contains_ai"),
                facets={
                    cast(Facet, k): _check_value(v, f"{path}.facets.{k}") for k, v in facets.items()
                },
                contributors=tuple(contributors),
            )
        )
    return ReleaseCredits(
        reference=_text(rel.get("reference"), "$.release.reference"),
        title=_text(rel.get("title", ""), "$.release.title"),
        contains_ai=_check_value(rel.get("contains_ai"), "$.release.contains_ai"),
        recordings=tuple(recordings),
    )


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CreditsError(f"{path}: expected an object")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise CreditsError(f"{path}: expected a list")
    return value


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise CreditsError(f"{path}: expected a string")
    return value


# --------------------------------------------------------------------------------------------
# ERN 4.3.2
# --------------------------------------------------------------------------------------------


def to_ern_fragment(release: ReleaseCredits) -> str:
    """The credits as ERN 4.3.2 ``PartyList``, ``ResourceList`` and ``ReleaseList`` elements.

    Children follow the XSD's sequences; the catalogue elements the XSD also requires but the
    credits do not hold (see the module docstring) are left for the message's producer to add.
    ERN children are unqualified.
    """
    parties = Element("PartyList")
    seen: set[str] = set()
    resources = Element("ResourceList")
    for rec in release.recordings:
        sound = SubElement(resources, "SoundRecording")
        SubElement(sound, "ResourceReference").text = rec.reference
        SubElement(sound, "Type").text = "MusicalWorkSoundRecording"
        resource_id = SubElement(SubElement(sound, "SoundRecordingEdition"), "ResourceId")
        if rec.isrc:
            SubElement(resource_id, "ISRC").text = rec.isrc
        SubElement(sound, "DisplayTitleText").text = rec.title
        SubElement(SubElement(sound, "DisplayTitle"), "TitleText").text = rec.title
        for con in rec.contributors:
            if con.party_reference not in seen:
                seen.add(con.party_reference)
                party = SubElement(parties, "Party")
                SubElement(party, "PartyReference").text = con.party_reference
                SubElement(SubElement(party, "PartyName"), "FullName").text = con.name
            node = SubElement(sound, "Contributor")
            if con.generative_ai:
                SubElement(node, "SpecialContributor").text = "GenerativeAI"
            else:
                SubElement(node, "ContributorPartyReference").text = con.party_reference
            for role in con.roles:
                SubElement(SubElement(node, "Role"), "Value").text = role
            if con.ai_contribution in _DECLARED:
                SubElement(node, "AiContribution").text = con.ai_contribution
            if con.generative_ai:
                credit = SubElement(node, "DisplayCredits")
                SubElement(credit, "DisplayCreditText").text = con.name
                SubElement(credit, "DisplayCreditParty").text = con.party_reference
        if rec.contains_ai in _DECLARED:
            SubElement(sound, "ContainsAI").text = rec.contains_ai
    releases = Element("ReleaseList")
    node = SubElement(releases, "Release")
    SubElement(node, "ReleaseReference").text = release.reference
    SubElement(node, "DisplayTitleText").text = release.title
    SubElement(SubElement(node, "DisplayTitle"), "TitleText").text = release.title
    group = SubElement(node, "ResourceGroup")
    for number, rec in enumerate(release.recordings, start=1):
        item = SubElement(group, "ResourceGroupContentItem")
        SubElement(item, "SequenceNumber").text = str(number)
        SubElement(item, "ReleaseResourceReference").text = rec.reference
    if release.contains_ai in _DECLARED:
        SubElement(node, "ContainsAI").text = release.contains_ai
    for part in (parties, resources, releases):
        indent(part)
    return "\n".join(tostring(p, encoding="unicode") for p in (parties, resources, releases))


def from_ern(data: str | bytes) -> tuple[ReleaseCredits, ...]:
    """Read AI credits back from an ERN 4.x message or a fragment written by to_ern_fragment.

    A missing ContainsAI or AiContribution reads as ``Undeclared`` (``All`` for a GenerativeAI
    contributor, DDEX's default); a release that lists no resources is given every recording
    of the message.  ``Role`` is read as ERN 4.3.2's ``Role/Value`` or ERN 4.3's plain text, and
    the ``attune:AiFacets`` element that earlier versions wrote is still read.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    root = _parse(text)
    names = {
        _child_text(p, "PartyReference"): _first_text(p, ("PartyName", "FullName"))
        for p in root.iter()
        if _local(p.tag) == "Party"
    }
    recordings: dict[str, RecordingCredits] = {}
    for sound in (e for e in root.iter() if _local(e.tag) == "SoundRecording"):
        reference = _child_text(sound, "ResourceReference")
        where = f"SoundRecording {reference or '?'}"
        contributors = []
        for con in (c for c in sound if _local(c.tag) == "Contributor"):
            party = _child_text(con, "ContributorPartyReference") or _first_text(
                con, ("DisplayCredits", "DisplayCreditParty")
            )
            contributors.append(
                ContributorCredit(
                    party_reference=party,
                    name=names.get(party, ""),
                    roles=tuple(_role(r) for r in con if _local(r.tag) == "Role"),
                    ai_contribution=_state(con, "AiContribution", f"{where}/Contributor"),
                    generative_ai=_child_text(con, "SpecialContributor") == "GenerativeAI",
                )
            )
        facets = {
            cast(Facet, f.get("Name", "")): _check_value(_text_of(f), f"{where}/AiFacets")
            for f in sound.iter(f"{{{EXTENSION_NS}}}Facet")
        }
        isrc = _first_text(sound, ("SoundRecordingEdition", "ResourceId", "ISRC"))
        recordings[reference] = RecordingCredits(
            reference=reference,
            title=_child_text(sound, "DisplayTitleText"),
            isrc=isrc or None,
            contains_ai=_state(sound, "ContainsAI", where),
            facets=facets,
            contributors=tuple(contributors),
        )
    releases = []
    for rel in (e for e in root.iter() if _local(e.tag) == "Release"):
        reference = _child_text(rel, "ReleaseReference")
        refs = [_text_of(e) for e in rel.iter() if _local(e.tag) == "ReleaseResourceReference"]
        chosen = [recordings[r] for r in refs if r in recordings] or list(recordings.values())
        releases.append(
            ReleaseCredits(
                reference=reference,
                title=_child_text(rel, "DisplayTitleText"),
                contains_ai=_state(rel, "ContainsAI", f"Release {reference}"),
                recordings=tuple(chosen),
            )
        )
    return tuple(releases)


def _role(element: Element) -> str:
    """A ``Role``'s value: ERN 4.3.2's ``Role/Value`` or ERN 4.3's text of ``Role`` itself."""
    return _child_text(element, "Value") or _text_of(element)


def _parse(text: str) -> Element:
    """Parse untrusted XML safely; a fragment of several elements is wrapped first."""
    try:
        return cast(Element, fromstring(text))
    except DefusedXmlException as exc:
        raise CreditsError(f"refused: {exc}") from None
    except ParseError:
        pass
    try:
        body = text.split("?>", 1)[1] if text.lstrip().startswith("<?xml") else text
        return cast(Element, fromstring(f"<Fragment>{body}</Fragment>"))
    except DefusedXmlException as exc:
        raise CreditsError(f"refused: {exc}") from None
    except ParseError as exc:
        raise CreditsError(f"not well-formed XML: {exc}") from None


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _text_of(element: Element) -> str:
    return (element.text or "").strip()


def _child_text(element: Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return _text_of(child)
    return ""


def _first_text(element: Element, path: tuple[str, ...]) -> str:
    """Text of the first descendant along ``path`` of local names ("" if absent)."""
    nodes = [element]
    for name in path:
        nodes = [c for n in nodes for c in n if _local(c.tag) == name]
    return _text_of(nodes[0]) if nodes else ""


def _state(element: Element, name: str, where: str) -> ContainsAI:
    """The ContainsAI-like child ``name`` of ``element``; absent reads as Undeclared."""
    for child in element:
        if _local(child.tag) == name:
            value = _text_of(child)
            if value not in _DECLARED:
                raise CreditsError(f"{where}/{name}: must be All, Partly or None, not {value!r}")
            return cast(ContainsAI, value)
    return "Undeclared"
