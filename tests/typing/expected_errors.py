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
        pool.map(square, [1], batchsize=2)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
        pool.imap_unordered(square, [1], on_error="ignore")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
        pool.starmap(square, [(1,)], odered=False)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
        pool.dispatch(square, [1], progres=True)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
        pool.options(timeout=5).call(square, "3")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
        print(names, wrong_item)
    slither.Pool(workers=2, proceses=2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    slither.Pool(backend="rey")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def awaiting(pool: slither.Pool) -> None:
    await pool.acall(square, "3")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    async for _ in pool.aimap(square, [1], on_eror="skip"):  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
        pass
    with pool.session() as session:
        session.map(square, [1], on_error="ignore")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
