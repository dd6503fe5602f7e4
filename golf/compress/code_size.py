"""The code half of the 16,000,000-byte budget, counted as a submission ships it.

A submission is one script. golf's is the golf modules a run loaded (``code_files``), each minified
(python-minifier: docstrings and argument/return annotations out, locals renamed; class-level annotations
kept for dataclasses), packed as a dict literal, LZMA2-compressed (raw stream, preset 9 extreme), base85
encoded, and put behind a short bootstrap that serves the modules from memory to ``import``: #1089 shipped
its train_gpt.py this way (146 KB -> 27 KB). ``shipped_script`` builds that script; its length is the count.
Modules with Triton kernels keep their annotations (``tl.constexpr`` parameters, the custom ops' schemas) and
their local names (the renamer binds a parameter used often to a short local, which Triton does not treat as a
constant), and the bootstrap serves sources to ``inspect`` (``get_source``), from which ``triton.jit`` reads.
"""

from __future__ import annotations

import base64
import lzma
from dataclasses import dataclass
from pathlib import Path

import python_minifier

import golf

METHOD = ("UTF-8 bytes of one self-extracting script holding the golf modules the run loaded (code_files), each "
          "minified with python-minifier, LZMA2 (raw, preset 9 extreme) + base85, behind a bootstrap that imports "
          "them from memory; the raw source bytes are beside it as code_raw")
FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
BOOTSTRAP = """import base64,importlib.abc,importlib.util,lzma,sys
S=eval(lzma.decompress(base64.b85decode({payload}),format=lzma.FORMAT_RAW,filters=[{{"id":lzma.FILTER_LZMA2}}]))
class L(importlib.abc.MetaPathFinder,importlib.abc.Loader):
 def find_spec(s,n,p,t=None):
  if n in S:return importlib.util.spec_from_loader(n,s,is_package=S[n][1])
  if n.split(".")[0]=="golf":raise ModuleNotFoundError(n+" is not packed in this script")
 def exec_module(s,m):
  exec(compile(S[m.__name__][0],m.__name__,"exec"),m.__dict__)
 def get_source(s,n):
  return S[n][0]
sys.meta_path.insert(0,L())
{entry}
"""
DEFAULT_ENTRY = "import golf.worker as w;w.main()"


@dataclass(frozen=True)
class CodeAccount:
    """The code half of the budget: the submission script as shipped, and the source it packs."""

    script: str                      # the script's text (its UTF-8 bytes are what the budget counts)
    files: tuple[str, ...] = ()      # the golf source files packed in it (paths from the repository root)
    raw: int | None = None           # their bytes before minifying and packing
    sha256: str | None = None        # of the packed source files (path and content)

    @property
    def shipped(self) -> int:
        return len(self.script.encode("utf-8"))


def module_name(path: Path) -> tuple[str, bool]:
    """(dotted name, is a package) of a golf source file."""
    root = Path(golf.__file__).resolve().parents[1]
    parts = list(path.resolve().relative_to(root).with_suffix("").parts)
    package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if package else parts), package


def minify(source: str, filename: str = "<golf>") -> str:
    kernel = "import triton" in source  # constexpr parameters and op schemas live in annotations, and a local
    return python_minifier.minify(source, filename=filename, remove_literal_statements=True, hoist_literals=False,
                                  remove_annotations=not kernel, rename_locals=not kernel)  # alias of one is no constexpr


def shipped_script(files: list[Path], entry: str = DEFAULT_ENTRY, extra: dict[str, str] | None = None) -> str:
    """The self-extracting script of ``files`` (see the module docstring), ending with ``entry``; ``extra``: more
    modules by dotted name and source (packed as they are, not minified)."""
    modules = {name: (source, False) for name, source in (extra or {}).items()}
    for f in files:
        name, package = module_name(f)
        modules[name] = (minify(f.read_text(encoding="utf-8"), str(f)), package)
    packed = lzma.compress(repr(modules).encode("utf-8"), format=lzma.FORMAT_RAW, filters=FILTERS)
    return BOOTSTRAP.format(payload=repr(base64.b85encode(packed)), entry=entry)


def shipped_bytes(files: list[Path]) -> int:
    return len(shipped_script(files).encode("utf-8"))
