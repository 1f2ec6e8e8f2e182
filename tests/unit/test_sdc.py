"""Disclosure checks of tables, cell by cell, against ACRO 1.0.2 itself (the SACRO
project's output checker, run here with its default thresholds) on ACRO's own test data:
the charities (``test_data.csv``), UCI Nursery and ACRO's synthetic tables."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hdh.airlock import sdc
from tests.conftest import SHARED_DATA

ACRO_DATA = SHARED_DATA / "sdc_acro" / "data"
ACRO_CHECKS = {
    "MinimumThresholdCheck": "threshold",
    "PresenceOfZeroCheck": "zero",
    "NKCheck": "nk-dominance",
    "PPercentCheck": "p-ratio",
    "MinimumDoFCheck": "dof",
}


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {
        "charity": pd.read_csv(ACRO_DATA / "test_data.csv"),
        "nursery": pd.read_csv(ACRO_DATA / "nursery.csv"),
        "synthetic": pd.read_csv(ACRO_DATA / "acro_synthetic_tables.csv"),
    }


@pytest.fixture(scope="module")
def acro(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        from acro import ACRO

        yield ACRO(suppress=False)
        logging.disable(logging.NOTSET)


def acro_reasons(acro: Any, data: pd.DataFrame, case: tuple[Any, ...], margins: bool) -> Any:
    _, index, columns, values, aggfunc = case

    def axis(names: list[str]) -> Any:
        return data[names[0]] if len(names) == 1 else [data[n] for n in names]

    kwargs = {} if values is None else {"values": data[values], "aggfunc": aggfunc}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acro.crosstab(axis(index), axis(columns), margins=margins, **kwargs)
    outcome = list(acro.results.results.values())[-1].outcome
    return outcome.map(
        lambda text: sorted(
            ACRO_CHECKS[name.strip()]
            for name in text.split(";")
            if name.strip() and name.strip() != "ok"
        )
    )


CASES = [
    ("charity", ["year"], ["grant_type"], None, "count"),
    ("charity", ["year"], ["grant_type"], "inc_grants", "mean"),
    ("charity", ["year"], ["grant_type"], "inc_grants", "sum"),
    ("charity", ["year"], ["grant_type"], "inc_grants", "median"),
    ("charity", ["year"], ["grant_type"], "inc_grants", "max"),
    ("charity", ["year"], ["grant_type"], "inc_grants", "min"),
    ("charity", ["grant_type"], ["survivor"], "total_costs", "mean"),
    ("charity", ["year", "grant_type"], ["survivor"], None, "count"),
    ("charity", ["grant_type"], ["year"], "balance", "sum"),  # negative balances
    ("nursery", ["recommend"], ["parents"], None, "count"),
    ("nursery", ["recommend"], ["parents", "finance"], None, "count"),
    ("nursery", ["health"], ["children"], None, "count"),
    ("synthetic", ["indvar1"], ["indvar2"], "depvar", "mean"),
    ("synthetic", ["indvar1", "indvar3"], ["indvar2"], "depvar", "sum"),
    ("synthetic", ["indvar3"], ["indvar4"], None, "count"),
]


@pytest.mark.parametrize("margins", [False, True], ids=["cells", "margins"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[4]}-{'x'.join(c[1] + c[2])}")
def test_each_cell_gets_acros_verdict(
    acro: Any, frames: dict[str, pd.DataFrame], case: tuple[Any, ...], margins: bool
) -> None:
    data = frames[case[0]]
    found = sdc.evidence(data, case[1], case[2], case[3], case[4], margins=margins)
    ours = sdc.assess(found)
    theirs = acro_reasons(acro, data, case, margins).reindex(index=ours.index, columns=ours.columns)
    assert theirs.notna().to_numpy().all(), "the two tables have the same cells"
    # hdh's two deliberate additions: a minimum or maximum is one person's own value,
    # and a cell holding its whole row or column discloses everyone in that line.
    extreme = ours.map(lambda r: "extreme" in r)
    assert extreme.to_numpy().any() == (case[4] in ("min", "max"))
    assert not ours.map(lambda r: "full" in r).to_numpy().any() or case[4] == "count"
    added = ("extreme", "full")
    assert (ours.map(lambda r: sorted(x for x in r if x not in added)) == theirs).to_numpy().all()
    key = repr(case)
    FOUND[key] = FOUND.get(key, False) or bool(ours.map(bool).to_numpy().any())


FOUND: dict[str, bool] = {}


def test_the_cases_include_disclosive_cells_of_every_kind() -> None:
    """Run after the comparisons: most of them have something to find."""
    assert len(FOUND) == len(CASES)
    assert sum(FOUND.values()) >= 9


def test_acro_marks_std_cells_by_their_degrees_of_freedom_not_against_the_threshold(
    acro: Any, frames: dict[str, pd.DataFrame]
) -> None:
    """ACRO 1.0.2 returns the table of degrees of freedom (people - 1) as the DoF
    check's mask, so every cell with more than one person fails and a one-person cell
    passes. hdh fails the cells with fewer than 10 degrees of freedom."""
    data = frames["charity"]
    case = ("charity", ["year"], ["grant_type"], "inc_grants", "std")
    found = sdc.evidence(data, case[1], case[2], case[3], "std")
    ours = sdc.assess(found).map(bool)
    theirs = acro_reasons(acro, data, case, False).map(bool)
    dof = found.count - 1
    assert (theirs == (dof != 0)).to_numpy().all()
    assert (ours == (dof < 10)).to_numpy().all()
    assert (dof >= 10).to_numpy().any()
    assert (dof < 10).to_numpy().any()


def test_suppression_leaves_no_hidden_cell_recoverable_from_totals(
    frames: dict[str, pd.DataFrame],
) -> None:
    data = frames["nursery"]
    for margins in (False, True):
        found = sdc.evidence(data, ["recommend"], ["parents"], margins=margins)
        reasons = sdc.assess(found)
        margin = "All" if margins else None
        safe, hidden = sdc.suppress(found.count, reasons, margins_name=margin)
        primary = reasons.map(bool)
        assert (hidden | ~primary).to_numpy().all(), "every failing cell is hidden"
        assert safe.isna().equals(hidden)
        # With margins the totals row and column are lines too.
        for line in (*[hidden.loc[r] for r in hidden.index], *[hidden[c] for c in hidden.columns]):
            assert line.sum() != 1, f"one hidden cell in {line.name!r} could be recovered"
        assert hidden.to_numpy().sum() > primary.to_numpy().sum(), "secondary cells hidden"


def test_a_single_small_cell_takes_the_smallest_neighbours_with_it() -> None:
    table = pd.DataFrame([[52, 3, 41], [63, 70, 22]], index=["a", "b"], columns=["x", "y", "z"])
    found = sdc.Evidence("count", table)
    safe, hidden = sdc.suppress(table, sdc.assess(found))
    # y/a (3) fails; its row hides z/a (41 < 52), its column y/b (70 is alone); then
    # row b hides one more: z/b (22 < 63).
    assert hidden.to_numpy().tolist() == [[False, True, True], [False, True, True]]
    rounded, _ = sdc.suppress(table, sdc.assess(found), round_base=5)
    assert (rounded.loc["a", "x"], rounded.loc["b", "x"]) == (50, 65)  # base 5
    assert (safe.loc["a", "x"], safe.loc["b", "x"]) == (52, 63)


def test_the_workspace_helpers_save_the_table_and_its_evidence(
    frames: dict[str, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import hdh.workspace as ws

    monkeypatch.setenv(ws.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(ws.OUTPUT_ENV, str(tmp_path / "out"))
    (tmp_path / "data").mkdir()
    checked = ws.crosstab(
        frames["charity"], "year", "grant_type", values="inc_grants", aggfunc="mean"
    )
    assert checked.kind == "magnitude"
    assert checked.report.loc[2010, "R/G"] == ["threshold", "nk-dominance", "p-ratio"]
    assert pd.isna(checked.safe.loc[2010, "R/G"])
    path = checked.save("grants.csv")
    declaration = json.loads((tmp_path / "out" / "grants.csv.sdc.json").read_text())
    assert (declaration["kind"], declaration["aggfunc"], declaration["values"]) == (
        "magnitude", "mean", "inc_grants",
    )  # fmt: skip
    assert declaration["rows"] == [str(y) for y in range(2010, 2016)]
    assert declaration["count"] == checked.evidence.count.to_numpy().tolist()
    assert set(declaration["stats"]) == {"sum", "max", "top_2_sum", "top_n_sum", "negative"}
    assert pd.read_csv(path, index_col=0).shape == (6, 4)
    with pytest.raises(ValueError, match="one statistic per table"):
        ws.pivot_table(frames["charity"], "year", "grant_type", "inc_grants", ["mean", "sum"])


@pytest.mark.parametrize("helper", ["crosstab", "pivot_table"])
def test_the_workspace_helpers_flag_as_acro_does(
    acro: Any, frames: dict[str, pd.DataFrame], helper: str
) -> None:
    import hdh.workspace as ws

    data = frames["charity"]
    ours = getattr(ws, helper)(
        data, "grant_type", "year", values="inc_grants", aggfunc="mean", margins=True
    ).report
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if helper == "crosstab":
            acro.crosstab(
                data.grant_type, data.year, values=data.inc_grants, aggfunc="mean", margins=True
            )
        else:
            acro.pivot_table(
                data, index="grant_type", columns="year", values="inc_grants",
                aggfunc="mean", margins=True,
            )  # fmt: skip
    outcome = list(acro.results.results.values())[-1].outcome
    if isinstance(outcome.columns, pd.MultiIndex):  # pivot_table: ("inc_grants", year)
        outcome.columns = outcome.columns.get_level_values(-1)
    theirs = outcome.map(
        lambda text: sorted(
            ACRO_CHECKS[n.strip()] for n in text.split(";") if n.strip() != "ok" and n.strip()
        )
    ).reindex(index=ours.index, columns=ours.columns)
    assert (ours.map(sorted) == theirs).to_numpy().all()
    assert ours.map(bool).to_numpy().any()


def test_a_cell_holding_its_whole_row_or_column_is_disclosive() -> None:
    table = pd.DataFrame([[50, 0, 0], [20, 30, 10]], index=["a", "b"], columns=["x", "y", "z"])
    reasons = sdc.assess(sdc.Evidence("count", table))
    # Everyone in row a is in column x; everyone in columns y and z is in row b.
    assert reasons.loc["a", "x"] == ["full"]
    assert reasons.loc["b", "y"] == ["full"]
    assert reasons.loc["b", "z"] == ["full"]
    assert reasons.loc["b", "x"] == []
    assert reasons.loc["a", "y"] == ["threshold", "zero"]
    with_totals = table.copy()
    with_totals["All"] = table.sum(axis=1)
    with_totals.loc["All"] = with_totals.sum(axis=0)
    totals = sdc.assess(sdc.Evidence("count", with_totals, margins_name="All"))
    assert totals.loc["All", "All"] == []  # a total holds its line by definition
    assert totals.loc["a", "x"] == ["full"]
