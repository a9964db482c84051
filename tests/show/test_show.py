"""minishow against the examples of Docker's go-units tests: both CLIs print sizes and ages through it."""

from __future__ import annotations

import pytest
from minishow import bytes_size, human_duration, human_size, table

MINUTE, HOUR = 60, 3600
DAY = 24 * HOUR
WEEK, MONTH, YEAR = 7 * DAY, 30 * DAY, 365 * DAY
KB, MB, GB, TB, PB = (1000**i for i in range(1, 6))
KIB, MIB, GIB, TIB, PIB = (1024**i for i in range(1, 6))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.45, "Less than a second"),
        (1, "1 second"),
        (45, "45 seconds"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (90, "About a minute"),
        (3 * MINUTE, "3 minutes"),
        (35 * MINUTE + 40, "35 minutes"),
        (59 * MINUTE, "59 minutes"),
        (HOUR, "About an hour"),
        (HOUR + 29 * MINUTE, "About an hour"),
        (HOUR + 31 * MINUTE, "2 hours"),
        (3 * HOUR + 29 * MINUTE, "3 hours"),
        (3 * HOUR + 31 * MINUTE, "4 hours"),
        (24 * HOUR, "24 hours"),
        (DAY + 12 * HOUR, "36 hours"),
        (2 * DAY, "2 days"),
        (13 * DAY + 5 * HOUR, "13 days"),
        (2 * WEEK, "2 weeks"),
        (4 * WEEK + 3 * DAY, "4 weeks"),
        (MONTH, "4 weeks"),
        (MONTH + 2 * WEEK, "6 weeks"),
        (2 * MONTH, "2 months"),
        (3 * MONTH + WEEK, "3 months"),
        (24 * MONTH, "24 months"),
        (24 * MONTH + 2 * WEEK, "2 years"),
        (3 * YEAR + 2 * MONTH, "3 years"),
    ],
)
def test_human_duration_as_go_units(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (1000, "1kB"),
        (1024, "1.024kB"),
        (1000000, "1MB"),
        (1048576, "1.049MB"),
        (2 * MB, "2MB"),
        (3.42 * GB, "3.42GB"),
        (5.372 * TB, "5.372TB"),
        (2.22 * PB, "2.22PB"),
        (10000000000000 * PB, "1e+04YB"),
        (512, "512B"),
    ],
)
def test_human_size_as_go_units(size: float, text: str) -> None:
    assert human_size(size) == text


def test_human_size_precision_three_as_docker_images() -> None:
    assert human_size(4_263_936, 3) == "4.26MB"
    assert human_size(1_500_000_000, 3) == "1.5GB"
    assert human_size(0, 3) == "0B"


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (1024, "1KiB"),
        (1024 * 1024, "1MiB"),
        (2 * MIB, "2MiB"),
        (3.42 * GIB, "3.42GiB"),
        (5.372 * TIB, "5.372TiB"),
        (2.22 * PIB, "2.22PiB"),
        (KIB**5 * PIB, "1.049e+06YiB"),
        (1536, "1.5KiB"),
    ],
)
def test_bytes_size_as_go_units(size: float, text: str) -> None:
    assert bytes_size(size) == text


def test_table_aligns_with_three_spaces_and_no_trailing_blanks() -> None:
    out = table(("A", "LONG HEADER", "C"), [("xyz", "1", ""), ("w", "22", "last")])
    assert out.splitlines() == ["A     LONG HEADER   C", "xyz   1", "w     22            last"]
