"""Where a command writes: one run at a time, nothing mixed, nothing half-written (DESIGN.md,
"Outputs").

The rule every command follows: an output folder belongs to one run at a time (claim(): a lock
file naming the run; a second run is refused in one line naming the holder, the lock of a process
that no longer runs, or one a dead run left empty, is taken over; a lock that cannot be written is
one line, none left behind); a fresh run starts from an empty folder (files() lists what
is there); --resume continues only what the same weights and data made (sha256_file / files_digest
recorded at the start and compared); files are written whole or not at all (write_bytes: a
temporary file renamed over the target; a full disk is one line and no leftover); an interrupt
(ctrl-C, SIGTERM) ends in one line. Nothing here knows a command's outputs: they say which.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

LOCK = ".lock"  # inside the folder it guards
LOCK_WRITE_SECONDS = 10  # an empty or garbled lock older than this was left by a run that died
INTERRUPTED = "interrupted; --resume continues"
TEMPORARY = re.compile(r".+\.tmp-(\d+)")  # write_bytes' name for a file being written: NAME.tmp-PID

PathLike = Union[str, os.PathLike]


class WriteError(OSError):
    """An output that cannot be written, or a folder another run holds; the message is one
    line."""


# ----------------------------------------------------------------------------------------------
# Before any work: can it be written, is it ours
# ----------------------------------------------------------------------------------------------


def default_run_dir(no_mvle: bool, no_mvle_attention: bool, no_local_adapter: bool,
                    tasks: str) -> Path:
    """runs/sama, runs/sama-no-mvle, ... (train.py's --out when none is given): evaluate.py finds
    an ablation's checkpoint from the same switches."""
    name = (
        "sama"
        + "-no-mvle" * no_mvle
        + "-no-mvle-attention" * no_mvle_attention
        + "-no-local-adapter" * no_local_adapter
        + ("" if tasks == "both" else f"-{tasks}")
    )
    return Path("runs") / name


def check_writable_folder(folder: PathLike, option: str = "--out") -> None:
    """The folder, or the nearest existing folder above it, must be a folder this process may write
    in; a file in the way is named."""
    folder = Path(folder).absolute()
    existing = next(f for f in (folder, *folder.parents) if f.exists())
    if not existing.is_dir():
        what = "" if existing == folder else f", so {folder} cannot be a folder"
        raise WriteError(f"{option} {existing}: is a file{what} (choose another {option})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WriteError(f"{option} {existing}: no permission to write there (choose another "
                         f"{option})")


def check_writable_file(path: PathLike, option: str = "--out") -> None:
    """A file to write: not a folder, in a folder that can be written."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"{option} {path}: is a folder, not a file (choose another {option})")
    check_writable_folder(path.parent, option)


def files(folder: PathLike) -> list[str]:
    """The names in a folder (none if it does not exist), its lock left out: what a fresh run
    requires to be empty."""
    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK) if folder.is_dir() else []


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(lock: Path) -> str:
    """Who holds a lock, in words; '' if its process no longer runs (a stale lock), or if it is
    empty or garbled for longer than LOCK_WRITE_SECONDS (its run died writing it)."""
    try:
        held = json.loads(lock.read_text())
        pid, host = int(held["pid"]), held["host"]
    except FileNotFoundError:
        return ""
    except (ValueError, KeyError, TypeError):  # being written by its holder this instant?
        try:
            return "another run" if time.time() - lock.stat().st_mtime < LOCK_WRITE_SECONDS else ""
        except FileNotFoundError:
            return ""
    except OSError:
        return "another run"
    if host == socket.gethostname() and not pid_running(pid):
        return ""
    return f"pid {pid} on {host} ({held.get('command', '?')}, since {held.get('started', '?')})"


@contextmanager
def claim(folder: PathLike, option: str = "--out") -> Iterator[Path]:
    """Hold `folder` for this run: made if missing, FOLDER/.lock written with this process's pid,
    host and command, removed at the end. Another live run's lock -> WriteError naming it; the lock
    of a process that no longer runs, or an empty one its run left (_holder), is replaced (said on
    stderr). A lock that cannot be written (a full disk) -> WriteError, none left behind. A folder
    made here and left empty (the run stopped before writing) is removed again."""
    folder = Path(folder)
    check_writable_folder(folder, option)
    made = not folder.exists()
    lock = folder / LOCK
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
                       "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_lock(lock, mine, option)
    except OSError as e:
        _remove_if_made_and_empty(folder, made)
        if isinstance(e, WriteError):
            raise
        raise WriteError(f"{folder}: cannot write there ({reason(e)})") from None
    try:
        yield folder
    finally:
        try:
            if lock.read_bytes() == mine:
                lock.unlink()
        except OSError:
            pass
        _remove_if_made_and_empty(folder, made)


def _write_lock(lock: Path, mine: bytes, option: str) -> None:
    """Create `lock` holding `mine`, replacing a stale one; a live run's -> WriteError. A lock
    that cannot be written whole is removed (OSError raised)."""
    for _ in range(3):
        try:
            f = open(lock, "xb")
        except FileExistsError:
            holder = _holder(lock)
            if holder:
                raise WriteError(f"{lock.parent}: in use by {holder}; wait for it to end, or use "
                                 f"another {option}") from None
            lock.unlink(missing_ok=True)  # a stale lock: its process is gone
            print(f"{lock}: removed the lock of a run that no longer runs", file=sys.stderr)
            continue
        try:
            with f:
                f.write(mine)
        except OSError:
            lock.unlink(missing_ok=True)
            raise
        return
    raise WriteError(f"{lock.parent}: its lock {lock} keeps coming back; another run is starting")


def _remove_if_made_and_empty(folder: Path, made: bool) -> None:
    if made and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def remove_stale_temporaries(folder: PathLike, pattern: re.Pattern = TEMPORARY) -> list[Path]:
    """Remove what writes killed mid-way left in `folder` (NAME.tmp-PID files or folders whose
    process no longer runs); returns what was removed."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        found = pattern.fullmatch(path.name)
        if found and not pid_running(int(found.group(1))):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    return removed


# ----------------------------------------------------------------------------------------------
# Writing: whole or not at all
# ----------------------------------------------------------------------------------------------


def reason(e: OSError) -> str:
    """An OSError in a few words; a full disk says so."""
    if e.errno == errno.ENOSPC:
        return "no space left on device"
    return e.strerror or str(e) or type(e).__name__


def write_bytes(data: bytes, path: PathLike) -> None:
    """The bytes to PATH.tmp-PID beside `path`, flushed to disk, then renamed over it: a crash, a
    kill or a full disk never leaves half a file. Any OSError -> WriteError naming the file, the
    temporary file removed."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(f"{path}: cannot write ({reason(e)}); left as it was") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(text: str, path: PathLike) -> None:
    """UTF-8; a file name that is not UTF-8 (held in `text` as Python decodes it, os.fsdecode) is
    written as its own bytes."""
    write_bytes(text.encode(errors="surrogateescape"), path)


@contextmanager
def whole_folder(folder: PathLike) -> Iterator[Path]:
    """A folder written whole or not at all: the block fills the temporary folder it is given
    (.NAME.tmp-PID beside `folder`), renamed to `folder` when the block ends; on an error or an
    interrupt the temporary folder is removed and `folder` is left as it was. `folder` must be
    missing or empty; OSError if another writer filled it meanwhile."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if folder.exists():
            folder.rmdir()  # empty; a filled one raises OSError
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_pngs(images: dict[Path, np.ndarray]) -> None:
    """(H, W) grey or (H, W, 4) RGBA uint8 arrays -> PNGs, all or none: each is written to a
    temporary file beside its target, and only when all are written are they renamed into place.
    On any error (a full disk, a folder in the way) the temporary files, the outputs already renamed
    and the folders made for them are removed, then WriteError names the file. A run killed
    mid-write leaves no truncated PNG (for --resume to trust, or for a user to find)."""
    made = []  # folders this call creates, parents first
    for folder in dict.fromkeys(path.parent for path in images):
        missing = [f for f in (folder, *folder.parents) if not f.exists()]
        made += [f for f in reversed(missing) if f not in made]
    temporary, renamed, path = {}, [], None
    try:
        for folder in made:
            folder.mkdir()
        for path, array in images.items():
            temporary[path] = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            Image.fromarray(array).save(temporary[path], format="PNG")
        for path, tmp in temporary.items():
            os.replace(tmp, path)
            renamed.append(path)
    except OSError as e:
        for leftover in [*temporary.values(), *renamed]:
            leftover.unlink(missing_ok=True)
        for folder in reversed(made):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        why = e.strerror or str(e) or type(e).__name__
        raise WriteError(f"{path or e.filename}: cannot write ({why}); none of "
                         f"{', '.join(p.name for p in images)} written") from None


def save_png(array: np.ndarray, path: Path) -> None:
    """One PNG, atomically (save_pngs)."""
    save_pngs({path: array})


# ----------------------------------------------------------------------------------------------
# Identities: the weights by their bytes, the data by its files
# ----------------------------------------------------------------------------------------------


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def first_few(names: list[str], n: int = 3) -> str:
    """The first n names for a message: 'a, b, c' / 'a, b, c, ... 117 more'."""
    return ", ".join(names[:n]) + (f", ... {len(names) - n} more" if len(names) > n else "")


def files_digest(paths: Iterable[PathLike]) -> str:
    """SHA-256 over the files in their order: each one's name (its bytes on disk, UTF-8 or not) and
    the SHA-256 of its contents. The same digest means the same files with the same bytes, wherever
    the folder lies."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.fsencode(Path(path).name) + f"\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# How a command ends: a problem in one line (exit status 2, or 3 for a model's NaN), ctrl-C and
# SIGTERM in one line (130), a file name that is not UTF-8 printed as its bytes
# ----------------------------------------------------------------------------------------------


class OptionError(ValueError):
    """A bad option, or two options that conflict, found before any work; one line."""


def run_main(body: Callable[[], int], errors: Mapping[type, int],
             interrupted: Union[str, Callable[[], str]] = "interrupted") -> int:
    """Every command's main runs its work through this, the one way a command ends on a problem:
    an OptionError (exit status 2) or an error of a kind in `errors` (the first kind it is an
    instance of gives the status: 2 for bad input, 3 for a NaN of the model's) prints
    "error: MESSAGE" on one line; ctrl-C or SIGTERM prints `interrupted` (or what it returns, for a
    message that depends on what was kept) and exits with 130. The body's own return is the exit
    status otherwise."""
    any_file_name_on_stdout()
    interrupts_as_keyboard_interrupt()
    try:
        return body()
    except (OptionError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return next((status for kind, status in errors.items() if isinstance(e, kind)), 2)
    except KeyboardInterrupt:
        print(interrupted() if callable(interrupted) else interrupted, file=sys.stderr)
        return 130


def _terminate(signum, frame):
    raise KeyboardInterrupt


def any_file_name_on_stdout() -> None:
    """A file name that is not UTF-8 (held as os.fsdecode decodes it) is printed as its own bytes,
    as ls prints it and as Python does in the C locale, not a UnicodeEncodeError (a UTF-8 locale's
    stdout is strict; stderr already writes such a name with backslashes)."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")


def interrupts_as_keyboard_interrupt() -> None:
    """SIGTERM (kill, a scheduler's end of job) raises KeyboardInterrupt as ctrl-C does, so that
    both unwind the same way: locks released, temporaries removed, one line. (Python lets only
    the main thread set a handler; elsewhere this does nothing.)"""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


# ----------------------------------------------------------------------------------------------
# Provenance: where a printed number comes from. The study, the benchmarks and the demo print it
# beside their numbers: image decoding, resizing and augmentation change with pillow, numpy and
# scipy, so a number is reproducible only with the versions it was made with (requirements.txt).
# ----------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent  # the repository (git) that provenance() names
PACKAGES = ("torch", "numpy", "pillow", "scipy")  # the packages whose versions move the numbers


def commit() -> str:
    """The repository's commit, and whether tracked files differ from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{sha}{' with uncommitted changes' if dirty else ''}"


def versions() -> str:
    """'torch 2.13.0+cpu, numpy 2.3.4, ...': the installed versions of PACKAGES."""
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def provenance() -> str:
    """One line for a header: 'commit abc1234; torch ..., numpy ..., pillow ..., scipy ...'."""
    return f"commit {commit()}; {versions()}"
