"""tests/conftest.py's `fresh_testbed`: two such tests in a row share one reset, and anything
else that ran between them makes the next one reset first (here with a testbed that only counts
its resets; the tests run in file order on one process)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


class CountingTestbed:
    def __init__(self) -> None:
        self.resets: list[str] = []

    def reset(self) -> None:
        self.resets.append(self.at)

    at = ""


BED = CountingTestbed()


@pytest.fixture(scope="module")
def testbed() -> CountingTestbed:
    return BED


@pytest.fixture(scope="module")
def module_state() -> Iterator[None]:
    yield


@pytest.fixture(autouse=True)
def named(request: pytest.FixtureRequest) -> None:
    BED.at = request.node.name


def test_first_fresh_resets_before(fresh_testbed: CountingTestbed) -> None:
    assert BED.resets == ["test_first_fresh_resets_before"]


def test_the_next_fresh_one_shares_the_reset_the_first_ended_with(fresh_testbed: CountingTestbed) -> None:
    # the first's closing reset only: none before this one
    assert BED.resets == ["test_first_fresh_resets_before"] * 2


def test_a_test_using_the_testbed_itself(testbed: CountingTestbed) -> None:
    assert len(BED.resets) == 3


def test_after_it_a_fresh_test_resets_first(fresh_testbed: CountingTestbed) -> None:
    assert BED.resets[3:] == ["test_after_it_a_fresh_test_resets_first"]


def test_with_a_module_fixture(fresh_testbed: CountingTestbed, module_state: None) -> None:
    assert BED.resets[5:] == []  # shared: the one before ended with a reset


def test_last_counts_everything(testbed: CountingTestbed) -> None:
    assert BED.resets == ["test_first_fresh_resets_before", "test_first_fresh_resets_before",
                          "test_the_next_fresh_one_shares_the_reset_the_first_ended_with",
                          "test_after_it_a_fresh_test_resets_first", "test_after_it_a_fresh_test_resets_first",
                          "test_with_a_module_fixture"]
