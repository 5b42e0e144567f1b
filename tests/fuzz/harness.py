"""What every fuzz test shares: the budget (a hypothesis profile), the rule every case must obey,
file corruptions, and a tally of what each target was given and how it ended.

Budget: ``SCIFLOW_FUZZ=ci`` (the default; bounded and derandomized, so CI runs the same cases
every time) or ``SCIFLOW_FUZZ=long`` (random, 2000 cases per target unless
``SCIFLOW_FUZZ_EXAMPLES=N`` says otherwise). ``SCIFLOW_FUZZ_REPORT=path.json`` writes the tally.
"""

from __future__ import annotations

import faulthandler
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from sciflow.data.errors import DataError

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.filter_too_much], "print_blob": True}
settings.register_profile("sciflow-ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("sciflow-long", **_COMMON)
PROFILE = os.environ.get("SCIFLOW_FUZZ", "ci")
if PROFILE not in ("ci", "long"):
    raise ValueError(f"SCIFLOW_FUZZ={PROFILE!r}: expected ci or long")
_LONG_EXAMPLES = int(os.environ.get("SCIFLOW_FUZZ_EXAMPLES", "2000"))


def budget(ci_examples: int) -> settings:
    """The settings of one fuzz target: ``ci_examples`` cases in CI, many more in the long run."""
    if PROFILE == "long":
        return settings(settings.get_profile("sciflow-long"), max_examples=_LONG_EXAMPLES)
    return settings(settings.get_profile("sciflow-ci"), max_examples=ci_examples)


# target -> outcome -> count; outcome is "ok" or the error's class name
TALLY: dict[str, Counter] = defaultdict(Counter)


def record(target: str, outcome: str) -> None:
    TALLY[target][outcome] += 1


def write_report(path: str | os.PathLike) -> None:
    report = {t: {"cases": sum(c.values()), **dict(sorted(c.items()))} for t, c in sorted(TALLY.items())}
    Path(path).write_text(json.dumps({"profile": PROFILE, "targets": report}, indent=2) + "\n")


def assert_clean(err: BaseException, *names: str) -> None:
    """The rule: a documented sciflow error whose message names the file (or folder) at fault."""
    assert isinstance(err, DataError), f"undocumented {type(err).__name__}: {err}"
    msg = str(err)
    assert any(n in msg for n in names), f"{type(err).__name__} names none of {names}: {msg}"


@contextmanager
def hang_guard(seconds: float = 300) -> Iterator[None]:
    """End the process with a traceback if one case runs ``seconds``: the HDF5 library can loop
    forever inside C code on damaged metadata (the fuzzer found one such file), which no Python
    timeout interrupts; failing loudly beats a run that never ends."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# -- corruptions of a file on disk ----------------------------------------------------------------

CORRUPTIONS = ("truncate", "bitflip", "zero_fill", "append_junk")


@st.composite
def corruption(draw: st.DrawFn) -> tuple[str, float, int, int]:
    """(kind, position as a fraction of the size, length or count, seed)."""
    return (draw(st.sampled_from(CORRUPTIONS)), draw(st.floats(0.0, 1.0)), draw(st.integers(1, 4096)),
            draw(st.integers(0, 2**31 - 1)))


def corrupt(path: Path, how: tuple[str, float, int, int]) -> None:
    """Damage ``path`` in place: cut it short, flip bits, zero a range, or append junk."""
    kind, where, n, seed = how
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    at = min(int(where * len(raw)), max(len(raw) - 1, 0))
    if kind == "truncate":
        raw = raw[:at]
    elif kind == "bitflip":
        for pos in rng.integers(0, len(raw), size=min(n, 64)):
            raw[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == "zero_fill":
        raw[at:at + n] = bytes(len(raw[at:at + n]))
    else:
        raw += rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))
