"""core.parallel: the process map and the forkserver's preloaded modules."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from core.parallel import map_with_state, on_dask

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from core.parallel import map_with_state, start_forkserver

    def loaded(name):
        return name in sys.modules

    def install(state):
        pass

    if __name__ == "__main__":
        if sys.argv[1] == "early":
            start_forkserver("colorsys")
        print(map_with_state(loaded, ["colorsys", "wave"], install=install, state=None, workers=2,
                             start_method="forkserver", desc="", progress=False))
""")


def test_forkserver_children_start_with_the_preloaded_modules(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(_SCRIPT.format(repo=str(REPO)))

    def run(mode: str) -> str:
        return subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, check=True,
                              timeout=120).stdout.strip()

    assert run("early") == "[True, False]"     # imported once in the forkserver, not in the workers
    assert run("late") == "[False, False]"


_STATE: list[int] = []


def _install(state: list[int] | None) -> None:
    _STATE[:] = state or []


def _scaled(i: int) -> int:
    return _STATE[i] * 10


def test_map_with_state_keeps_order_and_drops_the_state_inline() -> None:
    assert map_with_state(_scaled, [2, 0, 1], install=_install, state=[1, 2, 3], workers=1, start_method="fork",
                          desc="", progress=False) == [30, 10, 20]
    assert _STATE == []
    assert map_with_state(_scaled, [2, 0, 1], install=_install, state=[1, 2, 3], workers=2, start_method="fork",
                          desc="", progress=False) == [30, 10, 20]


_INSTALLS: list[int] = []


def _counting_install(state: list[int] | None) -> None:
    _install(state)
    _INSTALLS.append(0 if state is None else 1)


def _scaled_with_installs(i: int) -> tuple[int, int]:
    return _STATE[i] * 10, sum(_INSTALLS)


def test_map_with_state_on_dask_keeps_order_and_installs_the_state_once_per_worker() -> None:
    with on_dask(workers=2) as client:
        out = map_with_state(_scaled_with_installs, [2, 0, 1, 2, 0, 1], install=_counting_install, state=[1, 2, 3],
                             workers=1, start_method="fork", desc="", progress=False)
        dropped = client.run(lambda: list(_STATE))
    assert [v for v, _ in out] == [30, 10, 20, 30, 10, 20]
    assert {installs for _, installs in out} == {1}          # one install per worker, however many tasks it ran
    assert all(state == [] for state in dropped.values())    # and the workers drop the state at the end
    assert _STATE == [] and _INSTALLS == []                  # nothing ran in this process
