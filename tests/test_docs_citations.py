"""Citations of the provider document point at sections it has, by a path inside the repository.

Files in ``src/``, ``tests/``, ``docs/``, ``bench/`` and ``README.md`` cite the provider document as
``docs/providers.md §N.M``; in a file that cites it, a bare ``§N.M`` refers to it as well (the
document's own §0.2 states the rule). The document's sections are read from its numbered headings.
A citation fails this test when its section is not among them, or when the document is named by a
path that does not lead to ``docs/providers.md`` (such as the research notes outside the repository),
so citations cannot rot silently when the document changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "providers.md"
SCANNED_DIRS = ("src", "tests", "docs", "bench")
SCANNED_FILES = ("README.md",)
SUFFIXES = frozenset({".py", ".md", ".rst", ".txt", ".toml", ".yaml", ".yml", ".json", ".html", ".j2", ".sh"})
SKIPPED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
NAME = "providers" + ".md"  # split so that this file's own text is no citation

#: ``## 1. AWS KMS``, ``### 1.3 States and their mapping``: the section number of a heading.
HEADING = re.compile(r"^#{2,6}[ \t]+(\d+(?:\.\d+)*)\.?[ \t]", re.MULTILINE)
SECTION = re.compile(r"§[ \t]?(\d+(?:\.\d+)*)")
MENTION = re.compile(r"(?P<path>[\w./-]*)" + re.escape(NAME) + r"(?P<style>[`'\"]*,?[ \t]*(?:sections?[ \t]+)?\d)?")


def doc_sections(text: str) -> list[str]:
    """The section numbers of the document's headings, in order."""
    return HEADING.findall(text)


def names_the_doc(source: Path, path: str) -> bool:
    """Whether ``path + providers.md``, as written in ``source``, leads to the document: relative to the
    repository root (``docs/providers.md``) or, for a link in a Markdown file, to the file itself."""
    candidates = [ROOT / (path + NAME)]
    if source.suffix == ".md":
        candidates.append(source.parent / (path + NAME))
    return any(candidate.resolve() == DOC for candidate in candidates)


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def problems(source: Path, text: str, known: set[str]) -> list[str]:
    """What is wrong with the citations of the provider document in ``text`` (the file ``source``,
    an absolute path)."""
    cites = source.resolve() == DOC
    found: list[str] = []
    for mention in MENTION.finditer(text):
        cites = True
        if not names_the_doc(source, mention.group("path")):
            line = text.count("\n", 0, mention.start()) + 1
            found.append(f"{shown(source)}:{line}: names {mention.group(0)!r}, not docs/{NAME}")
        if mention.group("style"):
            line = text.count("\n", 0, mention.start()) + 1
            found.append(f"{shown(source)}:{line}: {mention.group(0)!r}: cite a section as docs/{NAME} §N.M")
    if not cites:
        return found
    for ref in SECTION.finditer(text):
        if ref.group(1) not in known:
            line = text.count("\n", 0, ref.start()) + 1
            found.append(f"{shown(source)}:{line}: cites §{ref.group(1)}, which docs/{NAME} does not have")
    return found


def scanned_files() -> Iterator[Path]:
    for name in SCANNED_FILES:
        yield ROOT / name
    this = Path(__file__).resolve()
    for folder in SCANNED_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.suffix not in SUFFIXES or path.resolve() == this:
                continue
            if SKIPPED_PARTS & set(path.parts) or any(part.endswith(".egg-info") for part in path.parts):
                continue
            yield path


def test_the_document_exists_with_unique_section_numbers() -> None:
    assert DOC.is_file(), f"docs/{NAME} is missing"
    numbers = doc_sections(DOC.read_text(encoding="utf-8"))
    assert {"0.2", "1.3", "2.4", "3.5", "4.7", "7"} <= set(numbers)
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not duplicates, f"section numbers used twice: {duplicates}"


def test_every_citation_names_an_existing_section() -> None:
    known = set(doc_sections(DOC.read_text(encoding="utf-8"))) if DOC.is_file() else set()
    found: list[str] = []
    citing = 0
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        if NAME in text:
            citing += 1
        found += problems(path, text, known)
    assert not found, "\n".join(found)
    assert citing >= 10, f"only {citing} files cite docs/{NAME}: is the scan looking in the right place?"


def test_the_checker_reports_a_missing_section_and_a_path_outside_the_repository() -> None:
    source = ROOT / "src" / "keyorch" / "providers" / "example.py"
    known = {"1", "1.3"}
    good = f"see docs/{NAME} §1.3 and §1"
    assert problems(source, good, known) == []
    missing = problems(source, f"see docs/{NAME} §1.3 and §9.9", known)
    assert len(missing) == 1
    assert "§9.9" in missing[0]
    outside = problems(source, f"see ../shared/reference/{NAME} §1.3", known)
    assert len(outside) == 1
    assert "../shared/reference/" in outside[0]
    assert problems(source, f"``{NAME}`` section 1", known), "a bare name is not the document's path"
    assert problems(source, f"docs/{NAME} section 1.3", known), "a section is cited with §, so that it is checked"
    assert problems(source, f"docs/{NAME} 1.3", known), "a section is cited with §, so that it is checked"
    assert problems(source, "§9.9 of some other text", known) == [], "§ alone is not a citation"
