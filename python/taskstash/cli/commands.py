"""The commands of `taskstash`, and its argument parser."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NoReturn

from taskstash import __version__
from taskstash.cache import Cache, Pruned
from taskstash.cli import output
from taskstash.cli.errors import EPILOG, EXIT_NOT_FOUND, EXIT_USAGE, CommandError
from taskstash.settings import parse_size
from taskstash.store import Record, ResultStorage

__all__ = ["parser"]

_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ARGUMENTS_WIDTH = 40  # of the ARGUMENTS column of `ls`
_TIMES = ("created_at", "expires_at", "last_hit_at")


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line (the usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(EXIT_USAGE, f"taskstash: error: {line}; see `{self.prog} --help`\n")


def parser() -> argparse.ArgumentParser:
    """The parser of the command line; each command sets `run(options) -> exit code`."""
    main = _Parser(
        prog="taskstash",
        description="Look after the taskstash cache: its index and results.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    main.add_argument("--version", action="version", version=f"taskstash {__version__}")
    main.add_argument("--index", help="the index file (default: TASKSTASH_INDEX_PATH)")
    main.add_argument("--storage", metavar="STORAGE", help=_STORAGE_HELP)
    commands = main.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, run: Callable[[Cache, argparse.Namespace], int], text: str, more: str = ""
    ) -> Any:
        sub = commands.add_parser(
            name,
            help=text,
            description=f"{text}. {more}".strip(),
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=lambda options: run(Cache(options.index, options.storage), options))
        sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        # Also after the command; SUPPRESS keeps a --storage given before it.
        sub.add_argument(
            "--storage", metavar="STORAGE", default=argparse.SUPPRESS, help=_STORAGE_HELP
        )
        return sub

    ls = command("ls", _ls, "list records, newest first")
    ls.add_argument("--task", help="only this task's (or flow's) records")
    ls.add_argument("--kind", choices=_KINDS, help="only tasks' or only cached flows' records")
    ls.add_argument("--expired", action="store_true", help="only expired records")
    ls.add_argument("--older-than", type=_age, metavar="AGE", help="only older ones (7d, 12h)")
    ls.add_argument("--limit", type=_count, default=50, help="at most this many (default 50)")

    show = command("show", _show, "show one record")
    show.add_argument("key", help="the key, or a prefix of it")

    rm = command(
        "rm",
        _rm,
        "remove records and their result files",
        "Each KEY is a whole key, or the start of exactly one key with --yes.",
    )
    rm.add_argument("keys", nargs="+", metavar="KEY", help="a key, or a prefix of one")
    rm.add_argument("--yes", action="store_true", help="also remove records named by a prefix")

    command(
        "stats",
        _stats,
        "records, bytes, hits, hit rate and time saved, per task (and cached flow)",
    )

    explain = command(
        "explain",
        _explain,
        "why a call of a task (or cached flow) misses",
        "Loading the task imports its module or file, which runs that file's top-level code "
        "(as `import` does; the task itself is not run).",
    )
    explain.add_argument("target", help="the task or flow, as module:name or path/to/file.py:name")
    explain.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument (repeat): a Python literal (2, 'a', [1, 2]), else a plain string",
    )

    prune = command(
        "prune",
        _prune,
        "remove expired, old, superseded or least recently used records",
        "A record goes if any reason given applies; then --max-size evicts the least "
        "recently used.",
    )
    prune.add_argument("--expired", action="store_true", help="expired records")
    prune.add_argument("--older-than", type=_age, metavar="AGE", help="records older than AGE")
    prune.add_argument(
        "--keep-newest",
        type=_count,
        metavar="N",
        help="all but each task's N newest records (those of older code or inputs)",
    )
    prune.add_argument("--max-size", type=_size, metavar="SIZE", help="evict down to SIZE")
    prune.add_argument("--task", help="only this task's (or flow's) records")
    prune.add_argument("--kind", choices=_KINDS, help="only tasks' or only cached flows' records")
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")
    prune.add_argument("--delete-objects", action="store_true", help=_DELETE_OBJECTS_HELP)

    clear = command("clear", _clear, "remove a task's records, or all of them")
    scope = clear.add_mutually_exclusive_group(required=True)
    scope.add_argument("--task", help="this task's records")
    scope.add_argument("--yes", action="store_true", help="every record: yes, all of them")
    clear.add_argument("--delete-objects", action="store_true", help=_DELETE_OBJECTS_HELP)

    verify = command(
        "verify",
        _verify,
        "check the index against the result files",
        "With --storage, only that storage's records and files. Files of a shared storage "
        "(an object store) without a row here are other machines' records, never removed.",
    )
    verify.add_argument("--fix", action="store_true", help="remove bad rows and stray files")
    verify.add_argument(
        "--delete-objects",
        action="store_true",
        help="with --fix, also delete the damaged objects of bad rows in shared storages",
    )

    command(
        "reindex",
        _reindex,
        "rebuild the index from the result files, or adopt a storage's records",
        "Without --storage, the index is rebuilt from TASKSTASH_LOCAL_STORAGE_PATH and the "
        "storages its rows name (a damaged index is moved aside first). With --storage, every "
        "live record of that storage (a shared bucket) is added to the index; other rows stay.",
    )
    return main


_KINDS = ("task", "flow")

_STORAGE_HELP = (
    "a result storage: a path, a URL (s3://bucket/prefix) or a name of the settings file; "
    "ls, stats, prune, clear and verify then see only its records, and reindex adopts them"
)
_DELETE_OBJECTS_HELP = (
    "also delete the objects of records in shared storages (object stores); without it only "
    "this index's rows of them go, and other machines keep using the objects"
)


def _age(text: str) -> float:
    match = _AGE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age; write it like 90s, 12h or 7d")
    return float(match.group(1)) * _AGE_UNITS[match.group(2).lower()]


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count; give 0 or more")
    return number


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# commands -------------------------------------------------------------------------------------


def _ls(cache: Cache, options: argparse.Namespace) -> int:
    records = cache.records(
        task=options.task,
        kind=options.kind,
        expired=True if options.expired else None,
        older_than=options.older_than,
        limit=options.limit,
        storage=_only(cache, options),
    )
    if options.json:
        output.print_json([asdict(r) for r in records])
        return 0
    header: tuple[str, ...] = ("KEY", "TASK", "CREATED", "SIZE", "HITS", "EXPIRES")
    rows: list[tuple[str, ...]] = [
        (
            r.key[:12],
            r.task_name,
            output.when(r.created_at),
            output.size(r.size_bytes),
            str(r.hit_count),
            output.when(r.expires_at, never="never"),
        )
        for r in records
    ]
    if any(r.kind != "task" for r in records):  # a column only where there are flows' records
        header = (*header[:2], "KIND", *header[2:])
        rows = [(*row[:2], r.kind, *row[2:]) for row, r in zip(rows, records, strict=True)]
    shown = [_parameters(r) for r in records]
    if any(shown):  # a column only for records that keep their arguments
        header += ("ARGUMENTS",)
        rows = [(*row, text) for row, text in zip(rows, shown, strict=True)]
    output.table(header, rows)
    return 0


def _parameters(record: Record) -> str:
    return output.shorten(record.parameters, _ARGUMENTS_WIDTH) if record.parameters else ""


def _show(cache: Cache, options: argparse.Namespace) -> int:
    record = _find(cache, options.key)
    if options.json:
        output.print_json(asdict(record))
        return 0
    fields: dict[str, object] = asdict(record)
    for name in _TIMES:
        moment: float | None = getattr(record, name)
        fields[name] = "never" if moment is None else f"{output.when(moment)} UTC"
    fields["size_bytes"] = f"{record.size_bytes} ({output.size(record.size_bytes)})"
    width = max(len(name) for name in fields)
    for name, value in fields.items():
        print(f"{name:<{width}}  {value}")
    return 0


def _find(cache: Cache, key: str) -> Record:
    """The record of `key`, or of the one key starting with it."""
    try:
        return cache.record(key)
    except KeyError:
        raise CommandError(
            f"no record has a key starting with {key!r} in {cache.path}; list them with "
            "`taskstash ls`",
            EXIT_NOT_FOUND,
        ) from None
    except ValueError:
        raise CommandError(
            f"several keys start with {key!r}; give more of the key", EXIT_USAGE
        ) from None


def _rm(cache: Cache, options: argparse.Namespace) -> int:
    # Every key is checked before any record goes: a mistyped one removes nothing.
    records = {}
    for key in options.keys:
        record = _find(cache, key)
        if record.key != key and not options.yes:
            raise CommandError(
                f"{key!r} is only the start of the key {record.key} (task {record.task_name}); "
                "give the whole key, or add --yes",
                EXIT_USAGE,
            )
        records[record.key] = record
    removed = [r for r in records.values() if cache.invalidate(r.key)]
    pruned = Pruned(len(removed), sum(r.size_bytes for r in removed), [r.key for r in removed])
    _report_removed(pruned, options, "removed")
    return 0


def _only(cache: Cache, options: argparse.Namespace) -> ResultStorage | None:
    """The storage given with --storage, whose records alone a command looks at; else None."""
    return cache.storage if options.storage is not None else None


def _stats(cache: Cache, options: argparse.Namespace) -> int:
    stats = cache.stats(storage=_only(cache, options))
    records, total = cache.totals(storage=_only(cache, options))
    if options.json:
        output.print_json({"records": records, "bytes": total, "tasks": [asdict(s) for s in stats]})
        return 0
    rows: list[tuple[str, ...]] = [
        (
            s.task_name,
            str(s.records),
            output.size(s.total_bytes),
            str(s.hits),
            f"{s.hit_rate:.0%}",
            output.duration(s.compute_seconds_saved),
        )
        for s in stats
    ]
    header: tuple[str, ...] = ("TASK", "RECORDS", "SIZE", "HITS", "HIT RATE", "TIME SAVED")
    if any(s.kind != "task" for s in stats):  # a column only where there are flows' records
        header = (header[0], "KIND", *header[1:])
        rows = [(row[0], s.kind, *row[1:]) for row, s in zip(rows, stats, strict=True)]
    output.table(header, rows)
    where = cache.path if options.storage is None else f"{cache.path}, in {cache.storage.url}"
    print(f"\n{output.count(records, 'record')}, {output.size(total)} in {where}")
    return 0


def _explain(cache: Cache, options: argparse.Namespace) -> int:
    from taskstash.cli.targets import arguments, load_task
    from taskstash.explanations import explain

    task = load_task(options.target)
    explanation = explain(task, **arguments(task, options.arg))
    if options.json:
        nearest = explanation.nearest
        output.print_json(
            {
                "task": explanation.task,
                "key": explanation.key,
                "hit": explanation.hit,
                "components": explanation.components,
                "nearest": None if nearest is None else nearest.key,
                "differs": explanation.differs,
                "reason": explanation.reason,
            }
        )
    else:
        print(explanation)
    return 0


def _prune(cache: Cache, options: argparse.Namespace) -> int:
    reasons = (options.older_than, options.max_size, options.keep_newest)
    if not options.expired and all(reason is None for reason in reasons):
        raise CommandError(
            "say what to prune: --expired, --older-than, --keep-newest or --max-size", EXIT_USAGE
        )
    pruned = cache.prune(
        expired=options.expired,
        older_than=options.older_than,
        max_size=options.max_size,
        keep_newest=options.keep_newest,
        task=options.task,
        kind=options.kind,
        dry_run=options.dry_run,
        progress=output.progress_bar("pruning"),
        storage=_only(cache, options),
        delete_objects=options.delete_objects,
    )
    _report_removed(pruned, options, "would remove" if options.dry_run else "removed")
    return 0


def _clear(cache: Cache, options: argparse.Namespace) -> int:
    pruned = cache.clear(
        task=options.task,
        progress=output.progress_bar("clearing"),
        storage=_only(cache, options),
        delete_objects=options.delete_objects,
    )
    _report_removed(pruned, options, "removed")
    return 0


def _verify(cache: Cache, options: argparse.Namespace) -> int:
    report = cache.verify(
        fix=options.fix,
        progress=output.progress_bar("verifying"),
        storage=_only(cache, options),
        delete_objects=options.delete_objects,
    )
    if options.json:
        output.print_json({**asdict(report), "ok": report.ok})
        return 0 if report.ok else EXIT_NOT_FOUND
    records, files = output.count(report.records, "record"), output.count(report.files, "file")
    print(f"checked {records} and {files} in {cache.path}")
    for items, one, many in (
        (report.missing, "row whose file is missing", "rows whose file is missing"),
        (report.damaged, "row whose file is damaged", "rows whose file is damaged"),
        (report.orphans, "file without a row", "files without a row"),
        (
            report.unchecked,
            "row naming a storage not given (not checked; see --storage)",
            "rows naming a storage not given (not checked; see --storage)",
        ),
        (
            report.unindexed,
            "file of a shared storage not in this index (fine; `taskstash reindex --storage` "
            "adopts it)",
            "files of a shared storage not in this index (fine; `taskstash reindex --storage` "
            "adopts them)",
        ),
        (
            report.temporary,
            "temporary file of an interrupted write",
            "temporary files of interrupted writes",
        ),
        (report.integrity, "SQLite integrity problem", "SQLite integrity problems"),
    ):
        if items:
            print(f"{output.count(len(items), one, many)}:")
            for item in items[:20]:
                print(f"  {item}")
            if len(items) > 20:
                print(f"  ... and {len(items) - 20} more")
    if report.fixed:
        print("fixed: bad rows and stray files removed")
    elif report.ok:
        print("all is well")
    else:
        print("run `taskstash verify --fix` to remove them")
    return 0 if report.ok else EXIT_NOT_FOUND


def _reindex(cache: Cache, options: argparse.Namespace) -> int:
    if options.storage is not None:
        adopted = cache.adopt(progress=output.progress_bar("adopting"))
        if options.json:
            output.print_json(
                {**asdict(adopted), "index": cache.path, "storage": cache.storage.url}
            )
        else:
            print(
                f"adopted {output.count(adopted.adopted, 'record')} of {cache.storage.url} into "
                f"{cache.path} ({output.count(adopted.files, 'file')}: {adopted.known} already "
                f"there, {adopted.expired} expired, {adopted.skipped} not result files)"
            )
        return 0
    count = cache.reindex()
    if options.json:
        output.print_json({"records": count, "index": cache.path})
    else:
        print(f"rebuilt {cache.path}: {output.count(count, 'record')}")
    return 0


def _report_removed(pruned: Pruned, options: argparse.Namespace, verb: str) -> None:
    if options.json:
        output.print_json(
            {
                "records": pruned.records,
                "bytes": pruned.bytes,
                "keys": pruned.keys,
                "kept_objects": pruned.kept_objects,
            }
        )
        return
    print(f"{verb} {output.count(pruned.records, 'record')}, {output.size(pruned.bytes)}")
    if pruned.kept_objects:
        objects = output.count(pruned.kept_objects, "object")
        print(
            f"kept {objects} in shared storage: only this index's rows go, other machines "
            "may use them (--delete-objects deletes them too)"
        )
