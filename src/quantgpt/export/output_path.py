"""Where an export writes: never over something it may not replace, never half-written.

`check_output_path` refuses an output path that exists, unless `overwrite` is set and the path
already holds an output of the same kind (each format says how it recognises its own output: the
packed format by its index file, a GGUF file by its magic). A run directory, a `save_pretrained`
directory, any other file, the input itself, anything inside the input and anything holding it are
never replaced. `staged_output` gives a temporary sibling of the output to write into and renames
it into place once it is complete, so a crash or a full disk leaves the old output or the new one
at the final path, never a part of one; the siblings a killed export left (`.NAME.tmp-XXXXXXXX`,
our naming only) are removed by the next export to the same path.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..durable import fsync_dir, recover_directory, replace_directory
from ..errors import OutputExistsError, OutputPathError


def describe(path: Path) -> str:
    """What an existing path is, in the words of an error message."""
    if path.is_symlink():
        return "symbolic link"
    if not path.is_dir():
        return "file"
    if (path / "run_config.json").exists() or (path / "checkpoints").is_dir() or (path / "best").is_dir():
        return "training run directory"
    if (path / "config.json").exists():
        return "save_pretrained model directory"
    return "directory"


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def check_output_path(
    out: str | os.PathLike,
    *,
    kind: str,
    is_same_kind: Callable[[Path], bool],
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """The output path `out`, after refusing what writing there would destroy.

    `kind` names the output in messages ("packed model", "GGUF file"); `is_same_kind(path)` says
    whether an existing path holds such an output, the only thing `overwrite=True` may replace.
    `inputs` are the paths the export reads: `out` may not be one of them, inside one, or hold one.
    An empty directory counts as free.
    """
    out = Path(out).expanduser()
    recover_directory(out)  # an earlier export killed between the two renames of replace_directory
    target = out.resolve()
    for source in inputs:
        source = Path(source).expanduser().resolve()
        if target == source or source in target.parents:
            raise OutputPathError(f"{out} is the input {source} or inside it: write the {kind} somewhere else")
        if target in source.parents:
            raise OutputPathError(f"{out} holds the input {source}: write the {kind} somewhere else")
    if out.is_symlink():
        raise OutputPathError(f"{out} is a symbolic link: give the path itself")
    if not out.exists() or _is_empty_dir(out):
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise OutputPathError(f"{out}: {parent} is a file, not a directory")
                break
        return out
    same_kind = is_same_kind(out)
    if not overwrite:
        if same_kind:
            raise OutputExistsError(f"{out} already holds a {kind}; pass --overwrite to replace it")
        raise OutputExistsError(f"{out} already exists (a {describe(out)}); choose another output path")
    if not same_kind:
        raise OutputExistsError(
            f"{out} is a {describe(out)}, not a {kind}: --overwrite only replaces a {kind}; choose another output path"
        )
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def remove_leftovers(out: Path) -> list[Path]:
    """Remove the staging siblings of `out` that an export killed before its rename left behind
    (SIGKILL runs no cleanup): only names `staged_output` makes, tempfile's 8 characters after
    `.NAME.tmp-`. Two exports to one path at once are not supported (the second would remove the
    first's staging), as their renames would race anyway. Returns what was removed."""
    pattern = re.compile(re.escape(_staging_prefix(out)) + r"[a-z0-9_]{8}")
    removed = []
    with contextlib.suppress(OSError):  # a parent that does not exist yet, or cannot be listed
        for path in out.parent.iterdir():
            if not pattern.fullmatch(path.name):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, *, directory: bool) -> Iterator[Path]:
    """A temporary sibling of `out` (a new directory, or a file path when `directory=False`) to write
    the whole output into; when the block ends without an error it replaces `out` (`os.replace` for
    a file), and on an error it is removed and `out` is left as it was."""
    out = Path(out)
    created = [parent for parent in out.parents if not parent.exists()]  # deepest first, removed on failure
    done = False
    staging = None
    remove_leftovers(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(out), dir=out.parent))
        else:
            handle, name = tempfile.mkstemp(prefix=_staging_prefix(out), dir=out.parent)
            os.close(handle)
            staging = Path(name)
        yield staging
        # mkdtemp and mkstemp make private (0700, 0600) paths; an export gets the usual modes
        os.chmod(staging, (0o777 if directory else 0o666) & ~_umask())
        if directory:
            replace_directory(staging, out)
        else:
            with open(staging, "rb") as written:
                os.fsync(written.fileno())
            os.replace(staging, out)
        fsync_dir(out.parent)
        done = True
    finally:
        if staging is None:
            pass
        elif staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)
        elif staging.exists() or staging.is_symlink():
            staging.unlink()
        if not done:
            for parent in created:
                with contextlib.suppress(OSError):
                    parent.rmdir()


__all__ = ["check_output_path", "describe", "remove_leftovers", "staged_output"]
