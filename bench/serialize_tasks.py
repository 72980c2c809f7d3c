"""CPU per list page of 100 tasks, from rows to envelope bytes: the TaskOut path the API uses
beside the hand-built dicts it replaced (and the from_attributes alternative).

Run by hand: `.venv/bin/python bench/serialize_tasks.py [--repeats 300]`. Rows come from an
in-memory SQLite table; each figure is the minimum over the repeats of time.process_time per
page (the machine is shared and noisy). Prints the figures; checks that the bytes agree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from pydantic import TypeAdapter
from sqlalchemy import create_engine, insert, select

from taskapi.blueprints.tasks.schemas import TaskOut, task_json, tasks_json
from taskapi.domain.models import Task, User
from taskapi.infra.db import Base

META = {"count": 100, "next_cursor": "WyIyMDI2LTEyLTAzVDEwOjAwOjAwLjEyMzQ1NiswMDowMCIsMTIzXQ"}
TASKS = TypeAdapter(list[TaskOut])


def rows_of_100() -> Sequence[Any]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(User.__table__).values(
                id=1, username="u", email="e", username_canonical="u", email_canonical="e",
                password_hash="x",
            )
        )  # fmt: skip
        for i in range(100):
            connection.execute(
                insert(Task.__table__).values(
                    title=f"Task number {i}",
                    description="Some description text " * 3 if i % 3 else None,
                    status="pending" if i % 2 else "completed",
                    due_date=dt.date(2026, 12, 1 + i % 28) if i % 4 else None,
                    owner_id=1,
                )
            )
        return connection.execute(select(Task.__table__)).all()


def hand_built(task: Any) -> dict[str, object]:
    """The hand-built payload the API used before TaskOut wrote its JSON."""
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "due_date": task.due_date.isoformat() if task.due_date else None,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "owner_id": task.owner_id,
    }


def envelope(data: object) -> bytes:
    return orjson.dumps({"status": "success", "data": data, "meta": META})


def best_of(
    paths: dict[str, Callable[[], bytes]], repeats: int, inner: int = 10
) -> dict[str, float]:
    """Each path's minimum CPU seconds per call; the paths take turns, so noise hits them alike."""
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(repeats):
        for name, path in paths.items():
            start = time.process_time()
            for _ in range(inner):
                path()
            best[name] = min(best[name], (time.process_time() - start) / inner)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=400)
    repeats = parser.parse_args().repeats
    rows = rows_of_100()
    paths: dict[str, Callable[[], bytes]] = {
        "hand-built dicts + orjson (before)": lambda: envelope([hand_built(r) for r in rows]),
        "tasks_json + orjson.Fragment (now)": lambda: envelope(orjson.Fragment(tasks_json(rows))),
        "TaskOut from_attributes on the Rows": lambda: envelope(
            orjson.Fragment(TASKS.dump_json(TASKS.validate_python(rows, from_attributes=True)))
        ),
        "one task, hand-built (before)": lambda: orjson.dumps(hand_built(rows[0])),
        "one task, task_json (now)": lambda: task_json(rows[0]),
    }
    pages = {name: path() for name, path in paths.items()}
    assert len({body for name, body in pages.items() if "one task" not in name}) == 1
    assert orjson.dumps(hand_built(rows[0])) == task_json(rows[0])
    for name, seconds in best_of(paths, repeats).items():
        print(f"{seconds * 1e6:8.1f} µs  {name}")


if __name__ == "__main__":
    main()
