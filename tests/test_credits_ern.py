"""ERN 4.3.2 shape of the AI-credits export, checked against facts taken from the official XSD.

The constants below were read from DDEX's ``release-notification.xsd`` (ERN 4.3.2, SCOW
v0.9.11 250618) and ``allowed-value-sets.xsd`` (AvsVersionId 9); the structural tests need
neither file.  ``test_message_validates_against_the_official_xsd`` also runs the real schema
when ``ATTUNE_ERN_XSD`` names a local ``release-notification.xsd``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from lxml import etree

from attune.provenance import credits
from attune.provenance.credits import ContributorCredit, RecordingCredits, ReleaseCredits
from attune.rights.ddex import parse_ern_bytes

# xs:sequence of each complexType, in XSD order (a choice's branches share one slot).
SEQUENCES: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "NewReleaseMessage": (
        "MessageHeader", "ReleaseAdmin", "PartyList", "CueSheetList", "ResourceList",
        "ChapterList", "ReleaseList", "DealList", "SupplementalDocumentList",
    ),
    "Party": (
        "PartyReference", ("PartyId", "PartyName"), "Affiliation", "RelatedParty",
        "ArtistProfilePage",
    ),
    "SoundRecording": (
        "ResourceReference", "Type", "SoundRecordingEdition", "RecordingFormat", "WorkId",
        "DisplayTitleText", "DisplayTitle", "FormalTitle", "GroupingTitle", "VersionType",
        "DisplayArtistName", "DisplayArtist", "Contributor", "Character",
        "ResourceRightsController", "WorkRightsController", "CourtesyLine", "Duration",
        "CreationDate", "MasteredDate", "RemasteredDate", "FirstPublicationDate",
        "LocationAndDateOfSession", "ParentalWarningType", "RelatedRelease", "RelatedResource",
        "CompositeMusicalWorkType", "ContainsAI", "IsCover", "HasVocalPerformance",
    ),
    "SoundRecordingEdition": (
        "Type", "ResourceId", "EditionContributor", "PLine", "RecordingMode", "TechnicalDetails",
    ),
    "Contributor": (
        ("ContributorPartyReference", "SpecialContributor"), "Role", "InstrumentType",
        "AiContribution", "HasMadeFeaturedContribution", "HasMadeContractedContribution",
        "IsCredited", "DisplayCredits",
    ),
    "Role": ("Value", "InstrumentType"),
    "DisplayCredits": ("DisplayCreditText", "DisplayCreditParty", "NameUsedInDisplayCredit"),
    "Release": (
        "ReleaseReference", "ReleaseType", "ReleaseId", "DisplayTitleText", "DisplayTitle",
        "FormalTitle", "GroupingTitle", "VersionType", "DisplayArtistName", "DisplayArtist",
        "ReleaseLabelReference", "AdministratingRecordCompany", "PLine", "CLine",
        "CourtesyLine", "Duration", "DisplayGenre", "ReleaseDate", "OriginalReleaseDate",
        "ReleaseVisibilityReference", "ParentalWarningType", "AvRating", "RelatedRelease",
        "RelatedResource", ("IsSingleArtistCompilation", "IsMultiArtistCompilation"),
        "ResourceGroup", "ExternalResourceLink", "TargetURL", "Keywords", "Synopsis", "Raga",
        "Tala", "Deity", "HiResMusicDescription", "ContainsAI",
    ),
    "ResourceGroupContentItem": ("SequenceNumber", "ReleaseResourceReference"),
}
# Children with minOccurs >= 1 that to_ern_fragment has the data to write.
REQUIRED_WRITTEN = {
    "Party": {"PartyReference", "PartyName"},
    "SoundRecording": {
        "ResourceReference", "Type", "SoundRecordingEdition", "DisplayTitleText", "DisplayTitle",
    },
    "SoundRecordingEdition": {"ResourceId"},
    "Release": {"ReleaseReference", "DisplayTitleText", "DisplayTitle", "ResourceGroup"},
    "ResourceGroupContentItem": {"ReleaseResourceReference"},
    "Role": {"Value"},
}
# Required catalogue children the credits do not hold, with schema-valid stand-ins for tests.
CATALOGUE: dict[str, tuple[tuple[str, str], ...]] = {
    "SoundRecording": (
        ("DisplayArtistName", "<DisplayArtistName>Mara Quell</DisplayArtistName>"),
        ("DisplayArtist", "<DisplayArtist><ArtistPartyReference>PMara</ArtistPartyReference>"
                          "<DisplayArtistRole>MainArtist</DisplayArtistRole></DisplayArtist>"),
        ("Duration", "<Duration>PT3M12S</Duration>"),
    ),
    "Release": (
        ("ReleaseType", "<ReleaseType>Single</ReleaseType>"),
        ("ReleaseId", "<ReleaseId><ICPN>4012345678901</ICPN></ReleaseId>"),
        ("DisplayArtistName", "<DisplayArtistName>Mara Quell</DisplayArtistName>"),
        ("DisplayArtist", "<DisplayArtist><ArtistPartyReference>PMara</ArtistPartyReference>"
                          "<DisplayArtistRole>MainArtist</DisplayArtistRole></DisplayArtist>"),
        ("ReleaseLabelReference", "<ReleaseLabelReference>PMara</ReleaseLabelReference>"),
        ("DisplayGenre", "<DisplayGenre><GenreText>Electronic</GenreText></DisplayGenre>"),
    ),
}
# Allowed-value sets: avs:ContainsAI, avs:SpecialContributorType, and the avs:ContributorRole
# values used here (4.3.2's set has 620 values; "Producer", for one, is not among them).
CONTAINS_AI_AVS = {"All", "None", "Partly"}
SPECIAL_CONTRIBUTOR_AVS = {"GenerativeAI", "Traditional", "UserDefined"}
ROLES_IN_AVS = {"Composer", "Lyricist", "Arranger", "ComposerLyricist", "MixingEngineer"}
ID_PATTERNS = {  # xs:ID / xs:IDREF restrictions
    "PartyReference": r"P[_0-9a-zA-Z-]+",
    "ContributorPartyReference": r"P[_0-9a-zA-Z-]+",
    "DisplayCreditParty": r"P[_0-9a-zA-Z-]+",
    "ResourceReference": r"A[_0-9a-zA-Z-]+",
    "ReleaseResourceReference": r"A[_0-9a-zA-Z-]+",
    "ReleaseReference": r"R[_0-9a-zA-Z-]+",
}
ERN = "http://ddex.net/xml/ern/432"


def album() -> ReleaseCredits:
    """A three-track release: generated, partly generated (human lyrics) and undeclared."""
    model = ContributorCredit(
        "PGen", "Attune Reference Generator 1.0", ("Composer", "Arranger"), generative_ai=True
    )
    mara = ContributorCredit("PMara", "Mara Quell", ("Lyricist",), "None")
    return ReleaseCredits(
        reference="R0",
        title="Night Drive",
        contains_ai="Undeclared",
        recordings=(
            RecordingCredits(
                "A1", "Night Drive", "GBXQ72600001", "All",
                {"composition": "All", "instrumentation": "All"}, (model,),
            ),
            RecordingCredits(
                "A2", "Glass Rain", "GBXQ72600002", "Partly",
                {"instrumentation": "All", "lyrics": "None"},
                (model, mara, ContributorCredit("PTeo", "Teo Brandt", ("MixingEngineer",),
                                                "Partly")),
            ),
            RecordingCredits(
                "A3", "Night Drive (Demo)", None, "Undeclared",
                contributors=(ContributorCredit("PTeo", "Teo Brandt", ("ComposerLyricist",)),),
            ),
        ),
    )


def fragment_root(release: ReleaseCredits) -> etree._Element:
    """The fragment's three lists under one wrapper element."""
    return etree.fromstring(f"<F>{credits.to_ern_fragment(release)}</F>")


def slot(parent: str, child: str) -> int:
    """Position of ``child`` in ``parent``'s XSD sequence (a choice's branches share one)."""
    for index, entry in enumerate(SEQUENCES[parent]):
        if child == entry or (isinstance(entry, tuple) and child in entry):
            return index
    raise AssertionError(f"{child} is not a child of {parent} in the ERN 4.3.2 XSD")


def message(release: ReleaseCredits) -> bytes:
    """A complete NewReleaseMessage around the fragment, catalogue stand-ins at XSD positions."""
    root = fragment_root(release)
    for name, items in CATALOGUE.items():
        for parent in root.iter(name):
            for child, xml in items:
                after = [c for c in parent if slot(name, c.tag) < slot(name, child)]
                parent.insert(parent.index(after[-1]) + 1 if after else 0, etree.fromstring(xml))
    parties = root.find("PartyList")
    assert parties is not None
    if parties.find("Party[PartyReference='PMara']") is None:
        parties.append(etree.fromstring(
            "<Party><PartyReference>PMara</PartyReference>"
            "<PartyName><FullName>Mara Quell</FullName></PartyName></Party>"
        ))
    body = "".join(etree.tostring(part, encoding="unicode") for part in root)
    return (
        f'<ern:NewReleaseMessage xmlns:ern="{ERN}" AvsVersionId="9" LanguageAndScriptCode="en">'
        "<MessageHeader><MessageId>M1</MessageId>"
        "<MessageSender><PartyId>PADPIDA0000000001</PartyId></MessageSender>"
        "<MessageRecipient><PartyId>PADPIDA0000000002</PartyId></MessageRecipient>"
        "<MessageCreatedDateTime>2026-03-01T09:00:00Z</MessageCreatedDateTime>"
        f"</MessageHeader>{body}</ern:NewReleaseMessage>"
    ).encode()


def test_children_follow_the_xsd_sequences_and_required_ones_are_written() -> None:
    root = fragment_root(album())
    assert [c.tag for c in root] == ["PartyList", "ResourceList", "ReleaseList"]
    checked = set()
    for element in root.iter():
        if element.tag not in SEQUENCES:
            continue
        checked.add(element.tag)
        slots = [slot(element.tag, c.tag) for c in element]
        assert slots == sorted(slots), f"{element.tag}: {[c.tag for c in element]}"
        missing = REQUIRED_WRITTEN.get(element.tag, set()) - {c.tag for c in element}
        assert not missing, f"{element.tag} lacks {missing}"
    assert checked >= set(SEQUENCES) - {"NewReleaseMessage"}


def test_contributors_use_the_xsd_choice_and_value_sets() -> None:
    root = fragment_root(album())
    for con in root.iter("Contributor"):
        heads = [c.tag for c in con if c.tag in ("ContributorPartyReference", "SpecialContributor")]
        assert len(heads) == 1 and con[0].tag == heads[0]
        assert all(r.findtext("Value") in ROLES_IN_AVS and len(r) == 1 for r in con.iter("Role"))
    special = [e.text for e in root.iter("SpecialContributor")]
    assert special and set(special) <= SPECIAL_CONTRIBUTOR_AVS
    states = [e.text for e in root.iter() if e.tag in ("ContainsAI", "AiContribution")]
    assert {"All", "Partly", "None"} <= set(states) <= CONTAINS_AI_AVS
    for tag, pattern in ID_PATTERNS.items():
        assert all(re.fullmatch(pattern, e.text or "") for e in root.iter(tag)), tag
    referenced = {e.text for e in root.iter("ContributorPartyReference", "DisplayCreditParty")}
    assert referenced <= {e.text for e in root.iter("PartyReference")}


def test_generated_outputs_credits_use_the_xsd_id_patterns() -> None:
    from attune.generate.pipeline import _credits

    root = fragment_root(_credits("gen-12", "Chorale in G", "markov-0123abcdef-o4-g6+x"))
    checked = 0
    for tag, pattern in ID_PATTERNS.items():
        for e in root.iter(tag):
            assert re.fullmatch(pattern, e.text or ""), (tag, e.text)
            checked += 1
    assert checked >= 4


def test_no_foreign_elements_because_the_xsd_has_no_extension_point() -> None:
    root = fragment_root(album())
    assert all(isinstance(e.tag, str) and "}" not in e.tag for e in root.iter())


def test_ern_round_trip_keeps_everything_but_facets() -> None:
    original = album()
    (back,) = credits.from_ern(credits.to_ern_fragment(original))
    assert back.recordings[0].contributors[0].generative_ai
    assert back.recordings[0].contributors[0].name == "Attune Reference Generator 1.0"
    assert back.recordings[0].contributors[0].ai_contribution == "All"
    assert back.recordings[2].contributors[0].ai_contribution == "Undeclared"
    assert all(v == "Undeclared" for r in back.recordings for v in r.facets.values())
    bare = tuple(
        RecordingCredits(r.reference, r.title, r.isrc, r.contains_ai, {}, r.contributors)
        for r in original.recordings
    )
    assert back == ReleaseCredits(original.reference, original.title, original.contains_ai, bare)


def test_the_form_written_before_validation_is_still_read() -> None:
    old = (
        '<ResourceList xmlns:attune="urn:attune:ai-credits:1"><SoundRecording>'
        "<ResourceReference>A1</ResourceReference><DisplayTitleText>T</DisplayTitleText>"
        "<Contributor><ContributorPartyReference>PGen</ContributorPartyReference>"
        "<Role>Composer</Role><SpecialContributor>GenerativeAI</SpecialContributor>"
        "<AiContribution>All</AiContribution></Contributor><ContainsAI>All</ContainsAI>"
        '<attune:AiFacets><attune:Facet Name="vocals">All</attune:Facet></attune:AiFacets>'
        "</SoundRecording></ResourceList>"
        "<ReleaseList><Release><ReleaseReference>R0</ReleaseReference></Release></ReleaseList>"
    )
    (release,) = credits.from_ern(old)
    (con,) = release.recordings[0].contributors
    assert (con.party_reference, con.roles, con.generative_ai) == ("PGen", ("Composer",), True)
    assert release.recordings[0].facets["vocals"] == "All"


def test_completed_message_is_read_by_the_registry_importer() -> None:
    parsed = parse_ern_bytes(message(album()))
    assert [e.reason for e in parsed.errors] == ["missing ISRC"]  # A3, the demo, has none
    assert [r.contains_ai for r in parsed.recordings] == ["All", "Partly"]
    assert {(c.party_reference, c.role) for c in parsed.recordings[1].contributors} == {
        ("PMara", "Lyricist"), ("PTeo", "MixingEngineer"),
    }


@pytest.mark.skipif(not os.environ.get("ATTUNE_ERN_XSD"), reason="ATTUNE_ERN_XSD not set")
def test_message_validates_against_the_official_xsd() -> None:
    schema = etree.XMLSchema(etree.parse(Path(os.environ["ATTUNE_ERN_XSD"])))
    document = etree.fromstring(message(album()))
    assert schema.validate(document), str(schema.error_log)
