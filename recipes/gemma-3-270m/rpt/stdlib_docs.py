"""Documents of English technical prose, offline: the docstrings of well-known Python standard-library modules.

    python recipes/gemma-3-270m/rpt/stdlib_docs.py data/stdlib_docs.jsonl
    rpt-trl train --config recipes/gemma-3-270m/rpt/config_cpu.yaml --dataset_name data/stdlib_docs.jsonl

Text of another kind than the demo's arithmetic corpus, for a run on text the project was not tuned on. Each line of
the output is one document, `{"text": ...}`: a module's docstring, then the docstrings of its public functions and
classes (each under its name and signature), packed in order into documents of `--min_chars` to `--max_chars`
characters; a module never shares a document with another. Cleaning: doctest examples and reST roles are removed,
and the lines of a wrapped prose paragraph are joined (a line break where a docstring wraps is layout, not text).

Deterministic: the same Python version writes the same file (docstrings change between versions). The file is
written whole or not at all; an existing file is replaced only with `--overwrite`.
"""

import argparse
import importlib
import inspect
import json
import os
import re
import sys
import textwrap
from collections.abc import Iterator

from rpt_trl.atomic_io import write_file_atomically
from rpt_trl.output_paths import check_output_path


MODULES = [
    "argparse", "base64", "bisect", "calendar", "collections", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "enum", "fractions", "functools", "glob", "gzip", "hashlib", "heapq", "html",
    "inspect", "ipaddress", "itertools", "json", "logging", "math", "operator", "os", "pathlib", "pickle", "queue",
    "random", "re", "shutil", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
    "typing", "urllib.parse", "uuid", "zipfile",
]  # fmt: skip

_DOCTEST = re.compile(r"^\s*(>>>|\.\.\.)( |$)")
_LIST_ITEM = re.compile(r"^([-*+]|\d+[.)]|[a-z][.)])\s")
_TABLE_GAP = re.compile(r"[^.?!:\s]  +\S")  # a column gap; two spaces after a sentence are not one
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]*)`")


def clean_docstring(doc: str) -> str:
    """The docstring as prose: code (doctest examples, literal blocks after `::`, indented blocks) and the sentence
    that introduces it removed, reST roles unwrapped, the lines of each paragraph joined (a list item keeps its own
    line, a table its line breaks).

    >>> clean_docstring("Add two numbers\\n    with :func:`add`.\\n\\n    For example::\\n\\n        add(1, 2)\\n")
    'Add two numbers with add.'
    """
    paragraphs: list[str] = []
    literal_indent = None
    for block in re.split(r"\n[ \t]*\n", inspect.cleandoc(doc)):
        lines = [line.rstrip() for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        indent = len(lines[0]) - len(lines[0].lstrip())
        in_literal = literal_indent is not None and indent > literal_indent  # a literal block may hold blank lines
        if not in_literal:
            literal_indent = indent if lines[-1].endswith("::") else None
        prose = [] if in_literal else _prose_lines(lines)
        if len(prose) < len(lines):  # code was left out: so is the sentence that introduces it
            if prose and prose[-1].endswith(":"):
                prose = []
            elif not prose and paragraphs and paragraphs[-1].endswith(":"):
                paragraphs.pop()
        if prose:
            paragraphs.append(_join_lines(textwrap.dedent("\n".join(prose)).splitlines()))
    return _ROLE.sub(r"\1", "\n\n".join(paragraphs)).strip()


def _prose_lines(lines: list[str]) -> list[str]:
    """The paragraph's lines up to its first line of code: a doctest line, or (outside a list) an indented line."""
    first = lines[0]
    is_list = bool(_LIST_ITEM.match(first.strip()))
    indent = len(first) - len(first.lstrip())
    if indent and not is_list:
        return []
    prose = []
    for line in lines:
        if _DOCTEST.match(line) or (not is_list and len(line) - len(line.lstrip()) > indent):
            break
        prose.append(line)
    return prose


def _join_lines(lines: list[str]) -> str:
    """A paragraph's lines joined where the docstring only wrapped them; a table keeps its line breaks."""
    if any(_TABLE_GAP.search(line.strip()) for line in lines):
        return "\n".join(lines)
    joined: list[str] = []
    for line in lines:
        if joined and not _LIST_ITEM.match(line.strip()):
            joined[-1] = f"{joined[-1]} {line.strip()}"
        else:
            joined.append(line.strip())
    return "\n".join(joined)


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None) or [name for name in vars(module) if not name.startswith("_")]
    return sorted(set(names))


def _defined_here(obj, module) -> bool:
    """Defined by the module or by its C accelerator (`heapq` and `_heapq`), not imported from elsewhere."""
    home = getattr(obj, "__module__", None)
    base = module.__name__.rsplit(".", 1)[-1]
    return home in (module.__name__, f"_{base}")


def _signature(obj) -> str:
    """`(a, b=1)`, or nothing where it has none, or where a default's repr is an address (it changes every run)."""
    try:
        signature = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    return "" if " at 0x" in signature else signature


def module_pieces(name: str) -> Iterator[str]:
    """The cleaned module docstring's paragraphs, then one piece per documented public function and class."""
    module = importlib.import_module(name)
    if module.__doc__:
        yield from clean_docstring(module.__doc__).split("\n\n")
    for attribute in _public_names(module):
        obj = getattr(module, attribute, None)
        if not (inspect.isroutine(obj) or inspect.isclass(obj)) or not _defined_here(obj, module):
            continue
        doc = obj.__doc__ if isinstance(obj.__doc__, str) else None
        if doc and doc.strip():
            yield f"{name}.{attribute}{_signature(obj)}\n\n{clean_docstring(doc)}"


def pack(pieces: Iterator[str], min_chars: int, max_chars: int) -> Iterator[str]:
    """Consecutive pieces joined by blank lines into documents of at most `max_chars` characters; a document shorter
    than `min_chars`, and a piece longer than `max_chars` (one that no document can hold whole), are left out."""
    current = ""
    for piece in pieces:
        piece = piece.strip()
        if not piece or len(piece) > max_chars:
            continue
        if current and len(current) + 2 + len(piece) <= max_chars:
            current = f"{current}\n\n{piece}"
            continue
        if len(current) >= min_chars:
            yield current
        current = piece
    if len(current) >= min_chars:
        yield current


def stdlib_documents(modules: list[str] = MODULES, min_chars: int = 300, max_chars: int = 1500) -> list[str]:
    """The documents of `modules`, in that order (see the module docstring)."""
    return [document for name in modules for document in pack(module_pieces(name), min_chars, max_chars)]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help='The JSON-lines file to write (one {"text": ...} a line).')
    parser.add_argument("--overwrite", action="store_true", help="Replace the output file if it exists.")
    parser.add_argument("--min_chars", type=int, default=300, help="Shortest document, in characters.")
    parser.add_argument("--max_chars", type=int, default=1500, help="Longest document, in characters.")
    return parser


def main(argv: list[str] | None = None) -> list[str]:
    """Write the documents to the output file; returns them."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if not 0 < args.min_chars <= args.max_chars:
        parser.error(f"--min_chars ({args.min_chars}) must be positive and at most --max_chars ({args.max_chars}).")
    if os.path.lexists(args.output) and not args.overwrite:
        parser.error(f"output {args.output} exists; pass --overwrite to replace it.")
    try:
        check_output_path(args.output, kind="file", flag="output")
    except ValueError as error:
        parser.error(str(error))
    documents = stdlib_documents(MODULES, args.min_chars, args.max_chars)
    lines = "".join(json.dumps({"text": document}, ensure_ascii=False) + "\n" for document in documents)
    write_file_atomically(args.output, lambda file: file.write(lines.encode("utf-8")))
    characters = sum(len(document) for document in documents)
    print(f"Wrote {len(documents)} documents ({characters:,} characters) from {len(MODULES)} modules of Python "
          f"{sys.version_info.major}.{sys.version_info.minor} to {args.output}.")  # fmt: skip
    return documents


if __name__ == "__main__":
    main()
