#!/usr/bin/env python3
"""Fails when a comment in a .c or .h file names a function that does not exist.

A comment that says "see region_format()" after region_format() was renamed
sends the reader looking for nothing.  This check finds every identifier
written as NAME() inside a comment and accepts it when NAME is

  - a name the code of the tree itself writes before a "(": a definition,
    a declaration, a call, a function-like macro, a function pointer
    "(*NAME)(";
  - the name of a parameter or a struct field in the code (a callback such
    as "load()" in shmc.h, called through a pointer);
  - in EXTERNAL below: a function of libc, Linux, liburing or another
    project that a comment names without the code calling it.

Anything else is reported as FILE:LINE: NAME() and the exit status is 1.

Usage: comment_names.py [SOURCE_ROOT]   (default: this file's ../..)
Standard library only.
"""
import os
import re
import sys

# Names that comments may mention though no code in the tree uses them:
# system and library functions, and other projects' functions cited as
# models.  Keep it short; a project function never belongs here.
EXTERNAL = {
    # libc / POSIX / Linux
    "exit", "abort", "fork", "ftruncate", "fsync", "fdatasync", "mmap",
    "munmap", "read", "write", "pread", "pwrite", "kill", "open", "close",
    "malloc", "free", "select", "poll", "sendmsg", "recvmsg",
    # other projects cited in comments
    "mdb_version", "io_uring_check_version",
}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
NAMED_IN_COMMENT = re.compile(r"(?<![A-Za-z0-9_.>*])(" + IDENT + r")\(\)")
CALLED_IN_CODE = re.compile(r"\b(" + IDENT + r")\s*\(")
FUNC_POINTER = re.compile(r"\(\s*\*\s*(" + IDENT + r")\s*\)\s*\(")
# A parameter or field: an identifier right before , ) ; [ or : (bit-field)
# that follows another identifier or a "*".
DECLARED_NAME = re.compile(r"(?:" + IDENT + r"|\*)\s+\**\s*(" + IDENT +
                           r")\s*(?:[,);\[:]|$)", re.M)


def split(text):
    """Returns (code, comments): the code with comments and literals blanked
    (newlines kept), and a list of (line, comment text)."""
    code = []
    comments = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            body = text[i:end]
            comments.append((line, body))
            line += body.count("\n")
            code.append("\n" * body.count("\n") or " ")
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            comments.append((line, text[i:end]))
            code.append(" ")
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            body = text[i:j + 1]
            line += body.count("\n")
            code.append(c + c)
            i = j + 1
        else:
            if c == "\n":
                line += 1
            code.append(c)
            i += 1
    return "".join(code), comments


def sources(root):
    for top, dirs, files in os.walk(root):
        # Not the git directory, not build directories (meson-private).
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                         not os.path.isdir(os.path.join(top, d,
                                                        "meson-private")))
        for f in sorted(files):
            if f.endswith((".c", ".h")):
                yield os.path.join(top, f)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")
    root = os.path.normpath(root)
    known = set(EXTERNAL)
    named = []
    for path in sources(root):
        with open(path, encoding="utf-8", errors="replace") as f:
            code, comments = split(f.read())
        known.update(CALLED_IN_CODE.findall(code))
        known.update(FUNC_POINTER.findall(code))
        known.update(DECLARED_NAME.findall(code))
        rel = os.path.relpath(path, root)
        for line, body in comments:
            for k, text in enumerate(body.split("\n")):
                for name in NAMED_IN_COMMENT.findall(text):
                    named.append((rel, line + k, name))
    bad = [(p, l, name) for p, l, name in named if name not in known]
    for p, l, name in bad:
        print("%s:%d: %s() is named in a comment but defined nowhere"
              % (p, l, name))
    if bad:
        print("%d comment(s) name functions that do not exist: rename them "
              "in the comment, or add a system function to EXTERNAL in %s"
              % (len(bad), os.path.relpath(__file__, root)))
        return 1
    print("%d function names in comments, all defined" % len(named))
    return 0


if __name__ == "__main__":
    sys.exit(main())
