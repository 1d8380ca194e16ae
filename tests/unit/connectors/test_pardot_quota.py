"""The shared Pardot budget's pieces that need no broker: slot shares and a resizable cap."""

from __future__ import annotations

import asyncio

from connectors.budget import Slots
from connectors.pardot.quota import shares


def test_live_members_split_the_five_slots_by_rank() -> None:
    assert [shares(["a", "b"], me, 5) for me in ("a", "b")] == [3, 2]
    assert shares([], "a", 5) == 5
    assert [shares(list("abcdef"), me, 5) for me in "abcdef"] == [1, 1, 1, 1, 1, 0]
    assert sum(shares(list("abc"), me, 5) for me in "abc") == 5


async def test_a_smaller_cap_holds_newcomers_until_holders_finish() -> None:
    slots = Slots(2)
    entered: list[int] = []
    release = asyncio.Event()

    async def hold(n: int) -> None:
        async with slots.hold():
            entered.append(n)
            await release.wait()

    first = [asyncio.ensure_future(hold(n)) for n in (1, 2)]
    await asyncio.sleep(0.01)
    await slots.resize(1)
    third = asyncio.ensure_future(hold(3))
    await asyncio.sleep(0.01)
    assert entered == [1, 2] and slots.busy == 2
    release.set()
    await asyncio.gather(*first, third)
    assert entered == [1, 2, 3] and slots.peak == 2 and slots.busy == 0
