#!/usr/bin/env python3
"""A man page and a program's --help name the same commands and options.

  check-against-help.py PAGE.scd PROGRAM

Every subcommand PROGRAM --help lists has a "## NAME" section in the page,
and every "## NAME" section is a subcommand (or PROGRAM itself); every
option that PROGRAM or one of its subcommands takes is in the page, in
bold (*--option*, *-o*) or in a section's synopsis line, and every option
the page shows so is one the program takes. The columns that a --help
text lists after "Columns, comma separated:" are the page's field list
(its "- *field*: ..." lines), neither more nor less. Exits 1 and names each
difference.
"""
import re
import subprocess
import sys

OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def help_text(program, *sub):
    return subprocess.run([program, *sub, "--help"], check=True, capture_output=True,
                          text=True).stdout


def section(text, title):
    """The lines of a CLI11 help section ("Options:", "Subcommands:")."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            inside = line == title
            continue
        if inside and line.startswith("  "):
            lines.append(line)
    return lines


def options(text):
    """Options of one help text: the names before each option's help."""
    found = set()
    for line in section(text, "Options:"):
        if line.startswith("  ") and not line.startswith("      "):
            names = line.split()[0].split(",")
            found.update(n.split("=")[0] for n in names if n.startswith("-"))
    return found - {"-h", "--help"}


def columns(text):
    m = re.search(r"Columns, comma separated: (\S+)", text)
    return set(m.group(1).split(",")) if m else set()


def main():
    page, program = sys.argv[1], sys.argv[2]
    scd = open(page).read()
    top = help_text(program)
    subs = {line.split()[0] for line in section(top, "Subcommands:") if not line.startswith("      ")}
    opts, cols = options(top), set()
    for sub in subs:
        text = help_text(program, sub)
        opts |= options(text)
        cols |= columns(text)

    headers = set(re.findall(r"^## (\S+)", scd, re.M))
    # Options in bold (not a bold suffix of a name: _NAME_*-real*), and
    # those a section's synopsis line names.
    page_opts = set(re.findall(r"(?<![\w_])\*(--?[a-zA-Z][\w-]*)\*", scd))
    for line in re.findall(r"^## .*$", scd, re.M):
        page_opts |= set(OPTION.findall(line))
    problems = []
    problems += [f"subcommand '{s}' has no '## {s}' section in {page}" for s in sorted(subs - headers)]
    # A section may also be the program itself (what it does without a
    # subcommand).
    own = {program.rsplit("/", 1)[-1]}
    problems += [f"'## {h}' in {page} is not a subcommand of {program}" for h in sorted(headers - subs - own)]
    problems += [f"option {o} is not in {page}" for o in sorted(opts - page_opts)]
    problems += [f"{page} shows {o}, which {program} does not take" for o in sorted(page_opts - opts)]
    listed = set(re.findall(r"^- \*([a-z_]+)\*:", scd, re.M))
    problems += [f"field '{c}' is not in {page}'s field list" for c in sorted(cols - listed)]
    problems += [f"{page} lists field '{c}', which {program} does not have"
                 for c in sorted(listed - cols) if cols]
    for p in problems:
        print(p)
    print(f"{page}: {len(subs)} subcommands, {len(opts)} options, {len(cols)} columns; "
          f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
