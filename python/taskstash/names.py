"""Generated run names: `outgoing-cicada` for flow runs, `add_one-d85` for task runs."""

from __future__ import annotations

import os

__all__ = ["flow_run_name", "task_run_name"]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ADJECTIVES = _words(
    "agile amber ancient bold brave bright calm clever cosmic crimson curious daring eager "
    "electric elegant famous fearless fluffy gentle giant golden graceful happy hidden humble "
    "icy jolly keen lively lucky mellow merry mighty nimble noble outgoing patient polite proud "
    "quick quiet rapid rustic scarlet shiny silent silver sleek smart snowy solid spirited steady "
    "stellar sunny swift tidy tough tranquil vivid warm wise witty zealous"
)
_ANIMALS = _words(
    "albatross alligator antelope badger beaver bison bobcat buffalo camel caribou cheetah cicada "
    "condor cougar coyote crane crow dingo dolphin donkey eagle eel falcon ferret finch flamingo "
    "fox gazelle gecko gibbon giraffe goose gorilla heron hyena ibis jackal jaguar kangaroo koala "
    "lemur leopard lion llama lobster lynx magpie marmot meerkat mole moose narwhal newt octopus "
    "okapi orca otter owl panda panther parrot pelican penguin puffin quail rabbit raccoon raven "
    "salmon seal shark sloth sparrow squid swan tapir tiger toucan turtle walrus weasel whale wolf "
    "wombat yak zebra"
)


def flow_run_name() -> str:
    """A memorable `adjective-animal` name."""
    return f"{_pick(_ADJECTIVES)}-{_pick(_ANIMALS)}"


def task_run_name(task_name: str) -> str:
    """The task's name and three hex digits, as `add_one-d85`."""
    return f"{task_name}-{os.urandom(2).hex()[:3]}"


def _pick(words: tuple[str, ...]) -> str:
    # os.urandom, not `secrets`: names need no more, and `secrets` costs `import taskstash` 4 ms.
    return words[int.from_bytes(os.urandom(4), "little") % len(words)]
