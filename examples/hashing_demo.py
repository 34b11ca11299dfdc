"""Cache keys from Python values: what taskstash hashes, and what it refuses.

Run: python examples/hashing_demo.py
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from taskstash import HashingError, hash_objects


@dataclass
class Job:
    name: str
    inputs: list[str]


def show(label: str, *values: object, **named: object) -> None:
    print(f"{label:<44} {hash_objects(*values, **named)}")


def main() -> None:
    print("Values Python calls equal get different keys:")
    show("  1", 1)
    show("  1.0", 1.0)
    show("  True", True)
    show("  (1, 2)", (1, 2))
    show("  [1, 2]", [1, 2])
    print("Order inside dicts and sets does not matter:")
    show("  {'a': 1, 'b': 2}", {"a": 1, "b": 2})
    show("  {'b': 2, 'a': 1}", {"b": 2, "a": 1})
    show("  {'x', 'y', 'z'}", {"x", "y", "z"})
    show("  {'z', 'y', 'x'}", {"z", "y", "x"})
    print("Objects are hashed by value:")
    show("  Job('etl', ['a.csv'])", Job("etl", ["a.csv"]))
    show("  Job('etl', ['b.csv'])", Job("etl", ["b.csv"]))
    print("A value with no canonical form is refused, saying where it is:")
    try:
        hash_objects(config={"retries": 3, "lock": threading.Lock()})
    except HashingError as error:
        print(f"  HashingError: {error}")


if __name__ == "__main__":
    main()
