"""Mistakes both type checkers must report. Every line marked here must produce exactly that error:
`nox -s typing` runs mypy --strict (warn_unused_ignores) and pyright --strict
(reportUnnecessaryTypeIgnoreComment), so a mistake that is no longer reported fails the session."""

# The misspelt names are of unknown type; only the mistakes themselves are the point here.
# pyright: reportUnknownVariableType=false, reportUnknownMemberType=false, reportUnknownArgumentType=false

from __future__ import annotations

import slither
from slither import Stor  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]


def square(x: int) -> int:
    return x * x


def main() -> None:
    pool_class = slither.Pol  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    print(pool_class, Stor)
    with slither.Pool(workers=2) as pool:
        names: list[str] = pool.map(square, [1, 2])  # type: ignore[arg-type]  # pyright: ignore[reportAssignmentType]
        wrong_item = pool.map(square, ["a", "b"])  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
        pool.dispatch(square, [1], per="items")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
        pool.imap(square, [1], on_error="ignore")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
        pool.call(square, "3")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
        print(names, wrong_item)
