"""Tests for attune.rights.ddex: the safe DDEX ERN 4.x parser."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from attune.rights import ddex
from attune.rights.ddex import (
    DdexError,
    ErnArtist,
    ErnMessage,
    ErnParty,
    ErnSoundRecording,
    RowError,
    parse_duration,
    parse_ern,
    parse_ern_bytes,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ern43_small.xml"
ERN43 = "http://ddex.net/xml/ern/43"
ENTITY_REFUSAL = (
    "refused: file contains a DTD with entity declarations (possible XXE / entity-expansion attack)"
)


def fixture_text() -> str:
    return FIXTURE.read_text(encoding="utf-8")


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the ``occurrence``-th line containing ``needle``."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not found")


PARTIES = """
  <PartyList>
    <Party>
      <PartyReference>P1</PartyReference>
      <PartyName><FullName>Ada Lune</FullName></PartyName>
    </Party>
  </PartyList>"""


def recording(
    ref: str = "A1",
    isrc: str | None = "USXYZ2400001",
    extra: str = "",
    artist: str = "P1",
    title: str = "<DisplayTitleText>Song</DisplayTitleText>",
    id_block: str | None = None,
) -> str:
    if id_block is None:
        id_block = (
            "<SoundRecordingEdition><ResourceId>"
            + (f"<ISRC>{isrc}</ISRC>" if isrc is not None else "")
            + "<ProprietaryId Namespace='PADPIDA0'>x</ProprietaryId>"
            + "</ResourceId></SoundRecordingEdition>"
        )
    return f"""
    <SoundRecording>
      <ResourceReference>{ref}</ResourceReference>
      <Type>MusicalWorkSoundRecording</Type>
      {id_block}
      {title}
      <DisplayArtist SequenceNumber="1">
        <ArtistPartyReference>{artist}</ArtistPartyReference>
        <DisplayArtistRole>MainArtist</DisplayArtistRole>
      </DisplayArtist>
      {extra}
    </SoundRecording>"""


def message(*recordings: str, ns: str = ERN43, parties: str = PARTIES, prolog: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>{prolog}
<ern:NewReleaseMessage xmlns:ern="{ns}" LanguageAndScriptCode="en" AvsVersionId="2024">
  <MessageHeader>
    <MessageId>MSG-1</MessageId>
    <MessageSender><PartyId>PADPIDA2024000001X</PartyId></MessageSender>
  </MessageHeader>{parties}
  <ResourceList>{"".join(recordings)}
  </ResourceList>
</ern:NewReleaseMessage>
""".encode()


# --------------------------------------------------------------------------------------------
# The fixture
# --------------------------------------------------------------------------------------------


def test_fixture_header_and_parties() -> None:
    msg = parse_ern(FIXTURE)
    assert isinstance(msg, ErnMessage)
    assert msg.message_id == "LTR-MSG-000417"
    assert msg.sender == "Lowtide Records Distribution"
    assert msg.errors == ()
    assert msg.parties == (
        ErnParty("PMaraQuell", "Mara Quell", "0000000412839532", None),
        ErnParty("PTobiAnsel", "Tobi Ansel", None, None),
        ErnParty("PJonahPike", "Jonah Pike", "000000045612378X", "00487120353"),
        ErnParty("PLowtideRecords", "Lowtide Records", None, None),
    )


def test_fixture_recordings_every_field() -> None:
    text = fixture_text()
    msg = parse_ern(FIXTURE)
    # The FrontCoverImage resource is not a recording.
    assert [r.reference for r in msg.recordings] == ["A1", "A2", "A3"]
    first, second, third = msg.recordings

    assert first == ErnSoundRecording(
        reference="A1",
        isrc="GBXQ72400101",
        title="Harbour Lights",
        duration_seconds=205,
        display_artists=(
            ErnArtist("PMaraQuell", "MainArtist"),
            ErnArtist("PTobiAnsel", "FeaturedArtist"),
        ),
        contributors=(
            ErnArtist("PMaraQuell", "Composer"),
            ErnArtist("PMaraQuell", "Lyricist"),
            ErnArtist("PJonahPike", "Producer"),
        ),
        contains_ai=None,
        p_line="(P) 2024 Lowtide Records",
        line=line_of(text, "<SoundRecording>", 1),
    )
    assert second == ErnSoundRecording(
        reference="A2",
        isrc="GBXQ72400102",
        title="Paper Satellites",
        duration_seconds=242,
        display_artists=(ErnArtist("PMaraQuell", "MainArtist"),),
        contributors=(
            ErnArtist("PJonahPike", "Composer"),
            ErnArtist("PJonahPike", "Producer"),
            ErnArtist("PTobiAnsel", "MixingEngineer"),
        ),
        contains_ai=None,
        p_line="(P) 2024 Lowtide Records",
        line=line_of(text, "<SoundRecording>", 2),
    )
    # No PLine, fractional duration rounded, UserDefined role replaced by its value.
    assert third == ErnSoundRecording(
        reference="A3",
        isrc="GBXQ72400103",
        title="Undertow (Instrumental)",
        duration_seconds=168,
        display_artists=(ErnArtist("PMaraQuell", "MainArtist"),),
        contributors=(
            ErnArtist("PJonahPike", "Composer"),
            ErnArtist("PJonahPike", "SynthProgrammer"),
        ),
        contains_ai=None,
        p_line=None,
        line=line_of(text, "<SoundRecording>", 3),
    )


def test_bytes_and_path_give_the_same_message() -> None:
    assert parse_ern_bytes(FIXTURE.read_bytes(), "x.xml") == parse_ern(str(FIXTURE))


def test_default_namespace_children_are_accepted() -> None:
    # Same message, children in the ERN namespace instead of unqualified.
    text = (
        fixture_text()
        .replace("xmlns:ern=", "xmlns=")
        .replace("ern:NewReleaseMessage", "NewReleaseMessage")
    )
    assert parse_ern_bytes(text.encode()) == parse_ern(FIXTURE)


def test_records_are_frozen() -> None:
    rec = parse_ern(FIXTURE).recordings[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        field = "isrc"
        setattr(rec, field, "X")
    assert not hasattr(rec, "__dict__")


# --------------------------------------------------------------------------------------------
# ContainsAI and ERN 4.3.2
# --------------------------------------------------------------------------------------------


def _ern432_with_contains_ai(values: list[str]) -> bytes:
    text = fixture_text().replace(ERN43, "http://ddex.net/xml/ern/432")
    parts = text.split("</SoundRecording>")
    for index, value in enumerate(values):
        parts[index] += f"  <ContainsAI>{value}</ContainsAI>\n    "
    return "</SoundRecording>".join(parts).encode()


def test_contains_ai_in_ern432() -> None:
    msg = parse_ern_bytes(_ern432_with_contains_ai(["Partly", "All", "None"]))
    assert [r.contains_ai for r in msg.recordings] == ["Partly", "All", "None"]
    assert msg.errors == ()


def test_contains_ai_absent_is_none() -> None:
    msg = parse_ern_bytes(_ern432_with_contains_ai(["All"]))
    assert [r.contains_ai for r in msg.recordings] == ["All", None, None]


def test_contains_ai_bad_value_is_row_error() -> None:
    msg = parse_ern_bytes(_ern432_with_contains_ai(["Maybe"]))
    assert [r.reference for r in msg.recordings] == ["A2", "A3"]
    (error,) = msg.errors
    assert error.element.endswith("SoundRecording[1]/ContainsAI")
    assert "'Maybe'" in error.reason


@pytest.mark.parametrize(
    "ns",
    [
        "http://ddex.net/xml/ern/43",
        "http://ddex.net/xml/ern/432",
        "http://ddex.net/xml/ern/42",
        "http://ddex.net/xml/ern/411",
    ],
)
def test_ern4_namespaces_accepted(ns: str) -> None:
    msg = parse_ern_bytes(message(recording(), ns=ns))
    assert msg.message_id == "MSG-1"
    assert [r.isrc for r in msg.recordings] == ["USXYZ2400001"]


# --------------------------------------------------------------------------------------------
# Element variants
# --------------------------------------------------------------------------------------------


def test_older_isrc_location_and_display_title_fallback() -> None:
    rec = recording(
        id_block="<ResourceId><ISRC>us-xyz-24-00009</ISRC></ResourceId>",
        title="<DisplayTitle><TitleText>Fallback Title</TitleText></DisplayTitle>",
        extra="<Duration>PT1H2M3S</Duration><PLine><PLineText>2019 Old Label</PLineText></PLine>",
    )
    (parsed,) = parse_ern_bytes(message(rec)).recordings
    assert parsed.isrc == "USXYZ2400009"  # normalised
    assert parsed.title == "Fallback Title"
    assert parsed.duration_seconds == 3723
    assert parsed.p_line == "2019 Old Label"
    assert parsed.contributors == ()


def test_default_display_title_is_preferred() -> None:
    title = (
        "<DisplayTitleText LanguageAndScriptCode='ja'>歌</DisplayTitleText>"
        "<DisplayTitleText LanguageAndScriptCode='en' IsDefault='true'>Song</DisplayTitleText>"
    )
    (parsed,) = parse_ern_bytes(message(recording(title=title))).recordings
    assert parsed.title == "Song"


def test_contributor_without_role_is_unknown() -> None:
    extra = "<Contributor><ContributorPartyReference>P1</ContributorPartyReference></Contributor>"
    (parsed,) = parse_ern_bytes(message(recording(extra=extra))).recordings
    assert parsed.contributors == (ErnArtist("P1", "Unknown"),)
    assert parsed.duration_seconds is None


def test_sender_falls_back_to_dpid() -> None:
    assert parse_ern_bytes(message(recording())).sender == "PADPIDA2024000001X"


# --------------------------------------------------------------------------------------------
# Row errors
# --------------------------------------------------------------------------------------------


def test_missing_isrc_is_row_error_with_line() -> None:
    data = message(recording("A1"), recording("A2", isrc=None), recording("A3", "USXYZ2400003"))
    msg = parse_ern_bytes(data)
    assert [r.reference for r in msg.recordings] == ["A1", "A3"]
    (error,) = msg.errors
    assert isinstance(error, RowError)
    assert error.line == line_of(data.decode(), "<SoundRecording>", 2)
    assert error.element == (
        "/NewReleaseMessage/ResourceList/SoundRecording[2]/SoundRecordingEdition/ResourceId/ISRC"
    )
    assert error.reason == "missing ISRC"


def test_unknown_display_artist_party_is_row_error() -> None:
    data = message(recording("A1"), recording("A2", "USXYZ2400002", artist="P404"))
    msg = parse_ern_bytes(data)
    assert [r.reference for r in msg.recordings] == ["A1"]
    (error,) = msg.errors
    assert error.line == line_of(data.decode(), "<SoundRecording>", 2)
    assert error.element.endswith("SoundRecording[2]/DisplayArtist[1]/ArtistPartyReference")
    assert "'P404'" in error.reason and "PartyList" in error.reason


def test_other_row_problems_are_collected() -> None:
    contributor = (
        "<Contributor><ContributorPartyReference>P9</ContributorPartyReference>"
        "<Role>Composer</Role></Contributor>"
    )
    data = message(
        recording("A1", "NOT-AN-ISRC"),
        recording("A2", "USXYZ2400002", extra="<Duration>3:25</Duration>"),
        recording("A3", "USXYZ2400003", extra=contributor),
        recording("A4", "USXYZ2400004", title=""),
        recording("A1", "USXYZ2400005"),
        recording("A6", "USXYZ2400006"),
    )
    msg = parse_ern_bytes(data)
    assert [r.reference for r in msg.recordings] == ["A6"]
    reasons = [(e.element.rsplit("/", 1)[-1], e.reason) for e in msg.errors]
    assert reasons == [
        ("ISRC", "malformed ISRC 'NOT-AN-ISRC'"),
        ("Duration", "'3:25' is not an ISO 8601 duration such as PT3M25S"),
        ("ContributorPartyReference", "references party 'P9' not in PartyList"),
        ("DisplayTitleText", "missing title (no DisplayTitleText or DisplayTitle)"),
        ("ResourceReference", "duplicate ResourceReference 'A1'"),
    ]
    assert [e.line for e in msg.errors] == sorted(e.line for e in msg.errors)


def test_missing_message_id_is_fatal() -> None:
    data = message(recording()).replace(b"<MessageId>MSG-1</MessageId>", b"")
    with pytest.raises(DdexError, match="MessageId"):
        parse_ern_bytes(data, "nohead.xml")


# --------------------------------------------------------------------------------------------
# Safety
# --------------------------------------------------------------------------------------------


@pytest.fixture
def secret_file(tmp_path: Path) -> tuple[Path, str]:
    secret = "TOP-SECRET-7f3a9c1e"
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    return path, secret


def _fail_if_called(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the lxml stage must not be reached for a refused file")


@pytest.mark.parametrize(
    "prolog",
    [
        # classic XXE
        '\n<!DOCTYPE ern:NewReleaseMessage [<!ENTITY xxe SYSTEM "file://{secret}">]>',
        # parameter entity
        '\n<!DOCTYPE ern:NewReleaseMessage [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>',
        # internal entity
        '\n<!DOCTYPE ern:NewReleaseMessage [<!ENTITY xxe "harmless">]>',
    ],
)
def test_entity_declarations_are_refused_without_reading(
    tmp_path: Path,
    secret_file: tuple[Path, str],
    prolog: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret_path, secret = secret_file
    data = message(recording(), prolog=prolog.format(secret=secret_path)).replace(
        b"MSG-1", b"&xxe;"
    )
    evil = tmp_path / "evil.xml"
    evil.write_bytes(data)
    monkeypatch.setattr(etree, "iterparse", _fail_if_called)
    with pytest.raises(DdexError) as info:
        parse_ern(evil)
    text = str(info.value)
    assert ENTITY_REFUSAL in text
    assert str(evil) in text and "line 2" in text
    assert info.value.line == 2
    captured = capsys.readouterr()
    assert secret not in text + captured.out + captured.err
    assert secret not in repr(info.value)


@pytest.mark.parametrize(
    "prolog, reason",
    [
        ('\n<!DOCTYPE r SYSTEM "file://{secret}">', "external DTD"),
        ('\n<!DOCTYPE r PUBLIC "-//X//DTD X//EN" "http://example.invalid/x.dtd">', "external DTD"),
        ("\n<!DOCTYPE r [<!ELEMENT r ANY>]>", "DOCTYPE declaration"),
        ("\n<!DOCTYPE r>", "DOCTYPE declaration"),
    ],
)
def test_any_doctype_is_refused(
    secret_file: tuple[Path, str], prolog: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_path, secret = secret_file
    monkeypatch.setattr(etree, "iterparse", _fail_if_called)
    with pytest.raises(DdexError, match=reason) as info:
        parse_ern_bytes(message(recording(), prolog=prolog.format(secret=secret_path)))
    assert "refused" in str(info.value)
    assert secret not in str(info.value)


def test_lxml_stage_alone_also_refuses(
    secret_file: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defence in depth: even if the prolog scan were bypassed, lxml resolves nothing.
    secret_path, secret = secret_file
    prolog = f'\n<!DOCTYPE ern:NewReleaseMessage [<!ENTITY xxe SYSTEM "file://{secret_path}">]>'
    data = message(recording(), prolog=prolog).replace(b"MSG-1", b"&xxe;")
    monkeypatch.setattr(ddex, "_scan_prolog", lambda *_args: None)
    with pytest.raises(DdexError) as info:
        parse_ern_bytes(data)
    assert ENTITY_REFUSAL in str(info.value)
    assert secret not in str(info.value)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43">
  <MessageHeader><MessageId>&lol9;</MessageId></MessageHeader>
</ern:NewReleaseMessage>
"""


def test_billion_laughs_is_refused_quickly() -> None:
    start = time.perf_counter()
    with pytest.raises(DdexError) as info:
        parse_ern_bytes(BILLION_LAUGHS, "lolz.xml")
    assert time.perf_counter() - start < 1.0
    assert str(info.value) == f"lolz.xml: line 3: {ENTITY_REFUSAL}"


def test_billion_laughs_lxml_stage_alone_is_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ddex, "_scan_prolog", lambda *_args: None)
    start = time.perf_counter()
    with pytest.raises(DdexError):
        parse_ern_bytes(BILLION_LAUGHS, "lolz.xml")
    assert time.perf_counter() - start < 1.0


def test_size_limit(tmp_path: Path) -> None:
    data = FIXTURE.read_bytes()
    with pytest.raises(DdexError, match="larger than the 1,000-byte limit"):
        parse_ern_bytes(data, "big.xml", max_bytes=1000)
    path = tmp_path / "big.xml"
    path.write_bytes(data)
    with pytest.raises(DdexError, match="larger than") as info:
        parse_ern(path, max_bytes=1000)
    assert str(path) in str(info.value)
    assert parse_ern(path, max_bytes=len(data)).message_id == "LTR-MSG-000417"


def test_bounded_reader_stops_growing_sources() -> None:
    reader = ddex._BoundedReader(_Endless(), limit=10_000)
    with pytest.raises(DdexError, match="larger than"):
        ddex._parse_stream(_Endless(), "endless", 10_000)
    with pytest.raises(ddex._TooLarge):
        while True:
            reader.read(4096)


class _Endless:
    """A source that looks like XML and never ends (a file still being written)."""

    def __init__(self) -> None:
        self._sent = False

    def read(self, size: int = -1) -> bytes:
        if not self._sent:
            self._sent = True
            return b"<ern:NewReleaseMessage xmlns:ern='http://ddex.net/xml/ern/43'>"
        return b"<x/>" * (max(size, 4) // 4)

    def seek(self, _offset: int, /) -> None:
        self._sent = False


# --------------------------------------------------------------------------------------------
# Not XML, wrong document
# --------------------------------------------------------------------------------------------


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.xml"
    path.write_bytes(message(recording()).replace(b"</DisplayTitleText>", b"</DisplayTitle>"))
    with pytest.raises(DdexError) as info:
        parse_ern(path)
    expected_line = line_of(path.read_text(), "<DisplayTitleText>")
    assert info.value.line == expected_line
    assert str(path) in str(info.value)
    assert f"line {expected_line}" in str(info.value)
    assert "not well-formed XML" in str(info.value)


@pytest.mark.parametrize(
    "data",
    [b"", b'{"MessageId": "x"}', b"\x89PNG\r\n\x1a\n\x00\x00", b"<?xml version='1.0'?>\n<a"],
)
def test_non_xml_is_refused(data: bytes) -> None:
    with pytest.raises(DdexError, match="not well-formed XML") as info:
        parse_ern_bytes(data, "junk.bin")
    assert str(info.value).startswith("junk.bin: line ")


@pytest.mark.parametrize(
    "root, match",
    [
        ('<ern:PurgeReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43"/>', "root element"),
        ('<NewReleaseMessage xmlns="http://ddex.net/xml/ern/382"/>', "unsupported namespace"),
        ("<NewReleaseMessage/>", "unsupported namespace 'no namespace'"),
        ('<NewReleaseMessage xmlns="http://ddex.net/xml/ern/4"/>', "unsupported namespace"),
        ('<rss xmlns="http://ddex.net/xml/ern/43"/>', "root element is 'rss'"),
    ],
)
def test_wrong_document_is_refused(root: str, match: str) -> None:
    with pytest.raises(DdexError, match=match) as info:
        parse_ern_bytes(root.encode(), "other.xml")
    assert info.value.line == 1
    assert str(info.value).startswith("other.xml: /")


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(DdexError, match="cannot read file"):
        parse_ern(tmp_path / "missing.xml")
    with pytest.raises(DdexError, match=r"cannot read file|not a regular file"):
        parse_ern(tmp_path)


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("PT3M25S", 205),
        ("PT1H2M3S", 3723),
        ("PT0H5M0S", 300),
        ("PT45S", 45),
        ("PT3M", 180),
        ("PT1H", 3600),
        ("PT2M47.6S", 168),
        ("PT2M47.5S", 168),
        ("PT2M47.4S", 167),
        ("PT0,5S", 1),
        ("P1DT1S", 86401),
        ("P0Y0M0DT0H3M25S", 205),
        (" PT10S\n", 10),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "3:25", "PT3M25", "P1Y", "P1M", "-PT3S", "PT1.5M", "pt3m", "PTS"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(
    st.integers(min_value=0, max_value=99),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
)
def test_parse_duration_round_trip(hours: int, minutes: int, seconds: int) -> None:
    assert (
        parse_duration(f"PT{hours}H{minutes}M{seconds}S") == hours * 3600 + minutes * 60 + seconds
    )


# --------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------


def test_many_recordings() -> None:
    recs = [recording(f"A{i}", f"USXYZ24{i:05d}") for i in range(1, 3001)]
    msg = parse_ern_bytes(message(*recs))
    assert len(msg.recordings) == 3000
    assert msg.recordings[-1].isrc == "USXYZ2403000"
    assert msg.recordings[-1].line > msg.recordings[0].line
