"""The README stays a short product page, and every `nextpatch ...` command in its code blocks works.

Each command line in a fenced code block (also after `&&`, `;` or `|`) is checked in-process against
`nextpatch.cli.build_parser()`: its verb (and `weights`' sub-verb) exists, and each `--flag` it uses
is one of that verb's options. A verb whose parser has no options yet (a placeholder) is checked for
existence only.
"""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from nextpatch.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
MAX_LINES = 300

def readme_commands() -> list[str]:
    """Every `nextpatch ...` command in the README's fenced code blocks, as written."""
    commands, in_block = [], False
    for line in README.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        code = line.split(" #", 1)[0].strip()
        if code.startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;|\|", code):
            part = part.strip()
            if part.startswith("time "):
                part = part[len("time "):].strip()
            if part.startswith("nextpatch ") or part == "nextpatch":
                commands.append(part)
    return commands


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_readme_is_at_most_300_lines():
    n = len(README.read_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; the product page keeps to {MAX_LINES} (move detail to docs/)"


def test_readme_has_commands():
    verbs = {shlex.split(c)[1] for c in readme_commands() if len(shlex.split(c)) > 1}
    assert {"train", "predict", "evaluate", "demo", "weights", "serve", "export"} <= verbs


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_exists_with_its_flags(command):
    words = shlex.split(command)
    assert len(words) > 1, f"{command!r}: no verb"
    verbs = subparsers(build_parser())
    verb = words[1]
    assert verb in verbs, f"{command!r}: `nextpatch {verb}` is not a verb (known: {sorted(verbs)})"
    parser, rest = verbs[verb], words[2:]
    nested = subparsers(parser)
    if nested:
        assert rest and rest[0] in nested, f"{command!r}: `nextpatch {verb}` needs one of {sorted(nested)}"
        parser, rest = nested[rest[0]], rest[1:]
    known = option_strings(parser)
    for word in rest:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert flag in known, f"{command!r}: {flag} is not in `nextpatch {' '.join(words[1:2])} --help` ({sorted(known)})"


def test_quickstart_commands_are_what_ci_runs():
    """The test command in the README is the one .ci/run runs (without -q on pip)."""
    text = README.read_text()
    assert 'python3 -m pip install "torch==2.13.0" -e ".[pretrained]" && nextpatch demo' in text
    assert 'python3 -m pip install "torch==2.13.0" -e ".[test]" && python3 -m pytest -q' in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'python3 -m pip install -q "torch==2.13.0" -e ".[test]"' in ci
    assert "python3 -m pytest -q" in ci
