"""Writing events of the `packed` layout into blocks (event_blocks.py has the format and where an event lives).

Before the id directory is claimed, each event gets the block it would start in (`assign_blocks`: per topic
generation and day, in batch order, cut by count and size; a new id, random per block). After the claim:
- ids claimed now go into their new blocks, one `insert_many` per partition;
- an id seen before (a redelivery, a retry, a copy whose first write was lost) follows its directory entry: a
  duplicate if its block lists it; written as its block if the block does not exist (the crash case); else
  alone in `<blk>/<id>`, a duplicate there if already written. Blocks never grow, so a copy has two possible
  homes, both with unique `_id`s: never stored twice. An entry without a block (the `partitioned` layout's)
  gets the event as one document, a duplicate `_id` being a copy already stored, as before.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

from pymongo.errors import BulkWriteError, OperationFailure

from tributary_common.mongo import write_errors

from .event_blocks import chunks, pack
from .partitions import Partitions, by_ids, id_key

Row = tuple[int, dict[str, Any]]  # index into the batch, placed document (`tu`, `day`, `blk` set)


def assign_blocks(docs: list[dict[str, Any]]) -> None:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        groups[(doc["tu"], doc["day"])].append(doc)
    for (uid, day), group in groups.items():
        for chunk in chunks(group):
            blk = f"{uid}/{day}/{uuid.uuid4().hex[:16]}"
            for doc in chunk:
                doc["blk"] = blk


async def write_blocks(
    partitions: Partitions, placed: list[Row], fresh: set[str], duplicates: list[int], refused: dict[int, str]
) -> None:
    """`fresh`: the directory keys claimed by this write."""
    seen: set[str] = set()
    new: dict[str, list[Row]] = defaultdict(list)
    known: list[Row] = []
    single: list[Row] = []
    for i, doc in placed:
        key = id_key(doc["tu"], doc["eid"])
        if key in seen:  # a later copy in the same batch
            duplicates.append(i)
            continue
        seen.add(key)
        if key in fresh:
            new[doc["blk"]].append((i, doc))
        elif doc.get("blk"):
            known.append((i, doc))
        else:
            single.append((i, doc))
    known += await _insert_blocks(partitions, new, refused)
    await _follow_entries(partitions, known, duplicates, refused)
    await insert_singles(partitions, single, duplicates, refused)


async def _insert_blocks(partitions: Partitions, blocks: dict[str, list[Row]], refused: dict[int, str]) -> list[Row]:
    """Each block once; the rows of a block that exists already (a writer raced this one) are returned."""
    by_part: dict[tuple[str, str], list[tuple[str, list[Row]]]] = defaultdict(list)
    for blk, rows in blocks.items():
        by_part[(rows[0][1]["tu"], rows[0][1]["day"])].append((blk, rows))
    raced: list[Row] = []
    for (uid, day), items in by_part.items():
        packed = []
        for blk, rows in items:
            packed.append(pack(blk, uid, day, [d for _, d in rows]))
            await asyncio.sleep(0)  # a turn for the rest of the process: a block of 1,000 takes milliseconds
        try:
            await partitions.events(uid, day).insert_many(packed, ordered=False)
        except BulkWriteError as exc:
            taken, refusals = write_errors(exc)
            for k in taken:
                raced += items[k][1]
            for k, why in refusals.items():
                refused.update({i: why for i, _ in items[k][1]})
    return raced


async def _follow_entries(
    partitions: Partitions, rows: list[Row], duplicates: list[int], refused: dict[int, str], again: bool = True
) -> None:
    by_part: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for i, doc in rows:
        by_part[(doc["tu"], doc["day"])].append((i, doc))
    for (uid, day), part_rows in by_part.items():
        coll = partitions.events(uid, day)
        blks = sorted({d["blk"] for _, d in part_rows})
        listed = {b["_id"]: set(b["ids"]) for b in await by_ids(coll, blks, {"ids": 1}, partitions.layout)}
        missing: dict[str, list[Row]] = defaultdict(list)
        alone: list[Row] = []
        for i, doc in part_rows:
            if doc["blk"] not in listed:
                missing[doc["blk"]].append((i, doc))
            elif doc["_id"] in listed[doc["blk"]]:
                duplicates.append(i)
            else:
                alone.append((i, doc))
        raced = await _insert_blocks(partitions, missing, refused)
        if raced and again:
            await _follow_entries(partitions, raced, duplicates, refused, again=False)
        elif raced:  # not the documents' fault: the batch writer retries the whole write
            raise OperationFailure("a block was written concurrently twice over; retrying")
        if alone:
            singles = [(i, pack(f"{d['blk']}/{d['eid']}", uid, day, [d])) for i, d in alone]
            await _insert(coll, singles, duplicates, refused)


async def _insert(
    coll: Any, rows: list[tuple[int, dict[str, Any]]], duplicates: list[int], refused: dict[int, str]
) -> None:
    """Documents with the batch index each stands for: a duplicate `_id` is a copy already stored."""
    try:
        await coll.insert_many([d for _, d in rows], ordered=False)
    except BulkWriteError as exc:
        taken, refusals = write_errors(exc)
        duplicates.extend(rows[k][0] for k in taken)
        refused.update({rows[k][0]: why for k, why in refusals.items()})


async def insert_singles(
    partitions: Partitions, rows: list[Row], duplicates: list[int], refused: dict[int, str]
) -> None:
    """One document per event, in its day partition: the `partitioned` and `indexed` layouts, and the events of
    the `packed` one whose directory entry names no block (written by the `partitioned` layout)."""
    by_part: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for i, doc in rows:
        by_part[(doc["tu"], doc["day"])].append((i, {k: v for k, v in doc.items() if k != "blk"}))
    for (uid, day), part_rows in by_part.items():
        await _insert(partitions.events(uid, day), part_rows, duplicates, refused)
