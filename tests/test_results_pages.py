"""The page-figure checks taken together (see page_figures.py): the known mismatches (`XFAIL`)
against the figures of every module, and the figures no results file holds (`UNTRACED`) against
their pages."""

import pytest
import test_results_bench as bench
import test_results_learning as learning
import test_results_offline as offline
from page_figures import UNTRACED, XFAIL, page_text, template


def test_the_known_mismatches_are_still_figures():
    ids = {f.id for module in (learning, offline, bench) for f in module.FIGURES}
    missing = set(XFAIL) - ids
    assert not missing, (
        f"XFAIL entries that match no figure (fixed or renamed? drop them): {missing}"
    )


@pytest.mark.parametrize(
    "page, text, why", UNTRACED, ids=[f"{p}: {t[:40]}" for p, t, _ in UNTRACED]
)
def test_untraced_figures_are_still_on_their_pages(page, text, why):
    assert template(text).search(page_text(page)), (
        f"{page} no longer says {text!r}: drop it from UNTRACED"
    )
