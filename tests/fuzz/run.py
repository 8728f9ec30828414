"""Run the atheris fuzz targets for a bounded time; CI calls this.

    python -m tests.fuzz.run --seconds 120                  # all targets, 120 s in total
    python -m tests.fuzz.run --seconds 60 --target inflate  # one target
    python -m tests.fuzz.run --seconds 600 --update-corpus  # keep new coverage in the repo
    python -m tests.fuzz.run --seed-corpus                  # (re)write the hand-made seeds
    python -m tests.fuzz.run --runs 10000000 --seconds 0 --target inflate   # a long run
    python -m tests.fuzz.run --minimize                     # shrink the corpus, same coverage

``--runs N`` stops each target after N executions (libFuzzer's ``-runs``); ``--seconds 0``
then sets no time limit.

Each target runs in its own process (libFuzzer owns the process), instrumented with atheris,
starting from ``tests/fuzz/corpus/<target>/``. New inputs go to a temporary directory unless
``--update-corpus`` merges those that add coverage into the repository's corpus. A crash is
written to ``tests/fuzz/crashes/<target>/`` and fails the run; ``tests/fuzz/test_corpus.py``
then replays it as a regular test until it is fixed (move it into the corpus then).

Prints, per target: executions, coverage (libFuzzer's ``cov``: instrumented edges reached,
and ``ft``: features), corpus size, and whether it crashed. Needs ``pip install atheris``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"
TARGET_NAMES = (
    "frames_server",
    "frames_client",
    "handshake_server",
    "handshake_client",
    "extension_headers",
    "inflate",
    "frame_parser",
    "diff_frames_server",
    "diff_frames_client",
    "diff_handshake_server",
    "diff_handshake_client",
)


@dataclass
class Result:
    target: str
    seconds: float
    executions: int
    coverage: int
    features: int
    corpus: str
    crashed: bool
    output: str

    def line(self) -> str:
        status = "CRASH" if self.crashed else "ok"
        return (
            f"{self.target:18} {status:5} {self.executions:>9,} execs in {self.seconds:5.1f} s"
            f"  cov {self.coverage:>5}  ft {self.features:>6}  corpus {self.corpus}"
        )


def _last_int(pattern: str, text: str) -> int:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else 0


def fuzz(
    target: str,
    seconds: int,
    update_corpus: bool,
    jobs_dir: Path,
    *,
    runs: int | None = None,
    timeout: int = 10,
    echo: bool = False,
) -> Result:
    corpus = CORPUS / target
    corpus.mkdir(parents=True, exist_ok=True)
    crashes = CRASHES / target
    crashes.mkdir(parents=True, exist_ok=True)
    new = jobs_dir / target
    new.mkdir()
    args = [
        *([f"-max_total_time={seconds}"] if seconds else []),
        *([f"-runs={runs}"] if runs else []),
        f"-timeout={timeout}",
        "-rss_limit_mb=2048",
        "-max_len=4096",
        "-print_final_stats=1",
        f"-artifact_prefix={crashes}/",
        str(new),
        str(corpus),
    ]
    shim = _shim(target, jobs_dir)
    start = time.monotonic()
    proc = _worker(shim, args, echo=echo)
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr
    result = Result(
        target=target,
        seconds=elapsed,
        executions=_last_int(r"stat::number_of_executed_units:\s*(\d+)", output),
        coverage=_last_int(r"cov: (\d+)", output),
        features=_last_int(r"ft: (\d+)", output),
        corpus=(re.findall(r"corp: (\S+)", output) or ["?"])[-1],
        crashed=proc.returncode != 0,
        output=output,
    )
    if update_corpus and not result.crashed:
        _worker(shim, ["-merge=1", str(corpus), str(new)])
    for folder in (crashes, CRASHES):  # keep the tree clean when nothing crashed
        if not any(folder.iterdir()):
            folder.rmdir()
    return result


def _shim(target: str, jobs_dir: Path) -> Path:
    """An executable that fuzzes ``target``: libFuzzer runs its ``argv[0]`` again to merge."""
    shim = jobs_dir / f"fuzz-{target}"
    shim.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.fuzz.run import worker\n"
        f"worker({target!r}, sys.argv[1:])\n"
    )
    shim.chmod(0o755)
    return shim


def _worker(shim: Path, args: list[str], *, echo: bool = False) -> subprocess.CompletedProcess[str]:
    """Run libFuzzer in ``shim``'s process; with ``echo``, copy its output to stderr as it comes.

    A long run's progress (libFuzzer's ``#N NEW``/``pulse`` lines) is otherwise seen only at
    its end, and lost with it if the run is stopped.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with subprocess.Popen(
        [str(shim), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # libFuzzer writes its statistics to stderr
        text=True,
        cwd=ROOT,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if echo:
                sys.stderr.write(line)
                sys.stderr.flush()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), "")


def all_targets() -> dict[str, Callable[[bytes], None]]:
    """Every target by name: the single-library ones and the differential ones."""
    from tests.fuzz.differential import DIFFERENTIAL_TARGETS
    from tests.fuzz.targets import TARGETS

    return {**TARGETS, **DIFFERENTIAL_TARGETS}


def worker(target: str, libfuzzer_args: list[str]) -> None:
    """Inside the fuzzing process: instrument wsmachine (and h11), then hand over to atheris."""
    import atheris

    with atheris.instrument_imports(include=["wsmachine", "h11"]):
        function = all_targets()[target]
    atheris.Setup([sys.argv[0], *libfuzzer_args], function)
    atheris.Fuzz()


def minimize(target: str, jobs_dir: Path) -> str:
    """Replace ``target``'s corpus by the smallest subset libFuzzer finds with its coverage."""
    corpus = CORPUS / target
    smaller = jobs_dir / f"min-{target}"
    smaller.mkdir()
    proc = _worker(_shim(target, jobs_dir), ["-merge=1", str(smaller), str(corpus)])
    if proc.returncode != 0 or not any(smaller.iterdir()):
        raise RuntimeError(f"minimizing {target} failed:\n{proc.stdout[-3000:]}")
    before = len(list(corpus.iterdir()))
    for path in corpus.iterdir():
        path.unlink()
    for path in smaller.iterdir():
        path.rename(corpus / path.name)
    return f"{target}: {before} -> {len(list(corpus.iterdir()))} inputs"


def seed_corpus() -> None:
    """Write the hand-made seeds: one file per input, named by its hash."""
    from tests.fuzz.seeds import SEEDS

    for target, inputs in SEEDS.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            name = "seed-" + hashlib.sha1(data).hexdigest()[:16]  # a file name, not security
            (folder / name).write_bytes(data)
        print(f"{target}: {len(inputs)} seeds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=120, help="total time for all targets")
    parser.add_argument("--runs", type=int, help="stop each target after this many executions")
    parser.add_argument("--target", action="append", choices=TARGET_NAMES)
    parser.add_argument(
        "--timeout",
        type=int,
        default=10,
        help="seconds of wall time one input may take (raise it when the run shares the CPU)",
    )
    parser.add_argument("--update-corpus", action="store_true")
    parser.add_argument("--seed-corpus", action="store_true")
    parser.add_argument("--minimize", action="store_true", help="shrink each target's corpus")
    parser.add_argument("--verbose", action="store_true", help="stream libFuzzer's output")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.rest)
        return 0
    if args.seed_corpus:
        seed_corpus()
        return 0
    chosen = args.target or list(TARGET_NAMES)
    if args.minimize:
        with tempfile.TemporaryDirectory(prefix="wsmachine-fuzz-") as tmp:
            for target in chosen:
                print(minimize(target, Path(tmp)), flush=True)
        return 0
    each = max(1, args.seconds // len(chosen))
    print(f"fuzzing {len(chosen)} target(s), {each} s each", flush=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="wsmachine-fuzz-") as tmp:
        for target in chosen:
            seconds = each if args.seconds else 0
            result = fuzz(
                target,
                seconds,
                args.update_corpus,
                Path(tmp),
                runs=args.runs,
                timeout=args.timeout,
                echo=args.verbose,
            )
            print(result.line(), flush=True)
            if result.crashed and not args.verbose:
                print(result.output[-6000:], flush=True)
            failed = failed or result.crashed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
