"""Every message people read has a Simplified Chinese translation (issue 16, "one language at a time").

(a) Error messages in the apps' Python sources: every string literal passed as the message of
``ServiceError``, the plain-Python packages' error types, or DRF/Django ``ValidationError``,
``PermissionDenied`` and ``NotFound`` must be wrapped in a gettext function or the ``N_`` marker, and
its msgid must have a non-empty msgstr in a zh_Hans catalogue.
(b) Templates: every ``{% translate %}`` / ``{% blocktranslate %}`` msgid has one too.
(c) The front end's scripts (``frontend/src``): every ``gettext``/``ngettext``/``pgettext`` literal, as
xgettext extracts it, has a non-empty, non-fuzzy msgstr in ``locale/zh_Hans/LC_MESSAGES/djangojs.po``
(the catalogue ``/jsi18n/`` serves); calls take literals; no Chinese literal is left in a script.

Plain Python and a small .po reader: no Django needed to find a missing translation.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("annotation", "diagnosis", "federation", "followup", "knowledge_graph", "portal")

# Exception types whose message is shown to people. The plain-Python packages' types carry an ``N_``
# template; ValidationError/PermissionDenied/NotFound are DRF's or Django's.
ERROR_TYPES = {
    "ServiceError",
    "ImagingError", "UnsupportedFileError", "MissingCompanionFileError", "CorruptFileError",
    "InconsistentSeriesError", "UnsafeArchiveError", "VolumeTooLargeError",
    "EditError", "DiffError", "SegInteropError", "DatasetLayoutError", "LidcError",
    "DefinitionError", "FhirError",
    "ValidationError", "PermissionDenied", "NotFound",
}
MARKERS = {"_", "N_", "gettext", "gettext_lazy", "gettext_noop"}
CONTEXT_MARKERS = {"pgettext", "pgettext_lazy"}


# ---------------------------------------------------------------- catalogues

def _po_unquote(chunks: list[str]) -> str:
    return "".join(ast.literal_eval(c) for c in chunks)


def po_read(path: Path) -> dict[tuple[str | None, str], str]:
    """Return ``{(msgctxt, msgid): msgstr}`` of a .po file (fuzzy and obsolete entries left out)."""
    entries: dict[tuple[str | None, str], str] = {}
    fields: dict[str, list[str]] = {}
    current: str | None = None
    fuzzy = False

    def flush() -> None:
        nonlocal fields, fuzzy
        if "msgid" in fields and not fuzzy:
            ctxt = _po_unquote(fields["msgctxt"]) if "msgctxt" in fields else None
            msgstr = _po_unquote(fields.get("msgstr", fields.get("msgstr[0]", [])))
            entries[(ctxt, _po_unquote(fields["msgid"]))] = msgstr
        fields, fuzzy = {}, False

    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            flush()
            current = None
        elif line.startswith("#"):
            if "msgstr" in fields or "msgstr[0]" in fields:
                flush()  # an entry ends at the next one's comments, even without a blank line
                current = None
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
        elif line.startswith('"'):
            if current is not None:
                fields[current].append(line)
        else:
            keyword, _, rest = line.partition(" ")
            if keyword in ("msgctxt", "msgid") and "msgid" in fields:
                flush()
            current = keyword
            fields[current] = [rest]
    flush()
    return entries


def zh_catalogue() -> dict[tuple[str | None, str], str]:
    """All zh_Hans entries: the project catalogue and the apps' own."""
    merged: dict[tuple[str | None, str], str] = {}
    for po in sorted(ROOT.glob("*/locale/zh_Hans/LC_MESSAGES/django.po")) + [
            ROOT / "locale/zh_Hans/LC_MESSAGES/django.po"]:
        for key, msgstr in po_read(po).items():
            if msgstr or key not in merged:
                merged[key] = msgstr
    return merged


@pytest.fixture(scope="module")
def catalogue():
    return zh_catalogue()


def test_po_reader_reads_continuations_context_and_fuzzy(tmp_path):
    po = tmp_path / "django.po"
    po.write_text('msgid ""\nmsgstr "Language: zh_Hans\\n"\n\n'
                  'msgid "a %(n)s"\nmsgstr ""\n"甲 "\n"%(n)s"\n\n'
                  'msgctxt "month"\nmsgid "May"\nmsgstr "五月"\n\n'
                  '#, fuzzy\nmsgid "b"\nmsgstr "乙"\n\n'
                  'msgid "c"\nmsgstr ""\n#: next.html\nmsgid "d"\nmsgstr "丁"\n', encoding="utf-8")

    entries = po_read(po)

    assert entries[(None, "a %(n)s")] == "甲 %(n)s"
    assert entries[("month", "May")] == "五月"
    assert (None, "b") not in entries
    assert entries[(None, "c")] == ""
    assert entries[(None, "d")] == "丁"


# ---------------------------------------------------------------- (a) error messages in Python

def _func_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _message_problems(node: ast.AST) -> tuple[list[str], list[str]]:
    """Return (msgids, problems) of one message expression."""
    if isinstance(node, ast.Call) and _func_name(node) in MARKERS | CONTEXT_MARKERS:
        index = 1 if _func_name(node) in CONTEXT_MARKERS else 0
        arg = node.args[index] if len(node.args) > index else None
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value], []
        return [], ["the marker's argument is not a string literal"]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _message_problems(node.left)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [], [f"untranslated literal {node.value[:60]!r}"]
    if isinstance(node, ast.JoinedStr):
        return [], ["an f-string (use a %(name)s template with params)"]
    if isinstance(node, ast.BinOp) and isinstance(node.left, (ast.Constant, ast.JoinedStr)):
        return [], ["a formatted literal not wrapped in a marker"]
    if isinstance(node, ast.IfExp):
        ids_a, problems_a = _message_problems(node.body)
        ids_b, problems_b = _message_problems(node.orelse)
        return ids_a + ids_b, problems_a + problems_b
    if isinstance(node, (ast.Dict, ast.List, ast.Tuple)):
        msgids, problems = [], []
        for child in (node.values if isinstance(node, ast.Dict) else node.elts):
            ids, found = _message_problems(child)
            msgids += ids
            problems += found
        return msgids, problems
    return [], []  # a computed message: an error's own template, a lazy text, a variable


def error_messages() -> tuple[list[tuple[str, str]], list[str]]:
    """Walk the apps' sources: (msgids with their places, problems with their places)."""
    msgids: list[tuple[str, str]] = []
    problems: list[str] = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "/migrations/" in rel:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and _func_name(node) == "N_":
                    # A plain-Python package's marked message, wherever it is raised from (answer checks).
                    ids, found = _message_problems(node)
                    msgids += [(msgid, f"{rel}:{node.lineno}") for msgid in ids]
                    problems += [f"{rel}:{node.lineno}: {p}" for p in found]
                if not isinstance(node, ast.Call) or _func_name(node) not in ERROR_TYPES:
                    continue
                message = node.args[0] if node.args else next(
                    (k.value for k in node.keywords if k.arg in ("message", "detail")), None)
                if message is None:
                    continue
                ids, found = _message_problems(message)
                msgids += [(msgid, f"{rel}:{node.lineno}") for msgid in ids]
                problems += [f"{rel}:{node.lineno}: {p}" for p in found]
    return msgids, problems


def test_error_messages_are_wrapped_in_a_translation_marker():
    msgids, problems = error_messages()

    assert len(msgids) > 200  # the walk finds the messages (about 330 when this was written)
    assert problems == []


def test_error_messages_have_a_chinese_translation(catalogue):
    msgids, _problems = error_messages()

    missing = sorted({f"{where}: {msgid!r}" for msgid, where in msgids if not catalogue.get((None, msgid))})
    assert missing == []


def test_the_walk_catches_an_unwrapped_message_and_an_f_string():
    tree = ast.parse('raise ServiceError("No such series.")\nraise ImagingError(f"{name}: bad", filename=name)\n'
                     'raise ValidationError({"f": _("ok %(n)s") % {"n": 1}})\n')
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _func_name(n) in ERROR_TYPES]

    results = [_message_problems(call.args[0]) for call in calls]

    assert results[0] == ([], ["untranslated literal 'No such series.'"])
    assert results[1][1] == ["an f-string (use a %(name)s template with params)"]
    assert results[2] == (["ok %(n)s"], [])


# ---------------------------------------------------------------- (b) templates

_TRANSLATE = re.compile(r"""{%-?\s*(?:translate|trans)\s+(?P<q>["'])(?P<msgid>.*?)(?P=q)(?P<rest>[^%]*)%}""", re.S)
_BLOCK = re.compile(r"{%-?\s*(?:blocktranslate|blocktrans)\b(?P<args>[^%]*)%}(?P<body>.*?)"
                    r"(?:{%-?\s*plural\s*-?%}(?P<plural>.*?))?{%-?\s*end(?:blocktranslate|blocktrans)\s*-?%}", re.S)
_VAR = re.compile(r"{{\s*([\w.]+)\s*}}")
_CONTEXT = re.compile(r"""\bcontext\s+(["'])(.*?)\1""")


def template_msgids(text: str) -> list[tuple[str | None, str]]:
    """Return the (context, msgid) pairs of a template, as makemessages would extract them."""
    found = []
    for m in _TRANSLATE.finditer(text):
        context = _CONTEXT.search(m.group("rest"))
        found.append((context.group(2) if context else None, m.group("msgid")))
    for m in _BLOCK.finditer(text):
        args = m.group("args")
        body = m.group("body")
        if "trimmed" in args.split():
            body = " ".join(line.strip() for line in body.strip().splitlines() if line.strip())
        context = _CONTEXT.search(args)
        found.append((context.group(2) if context else None,
                      _VAR.sub(lambda v: f"%({v.group(1)})s", body.replace("%", "%%"))))
    return found


def test_template_msgids_follow_makemessages():
    text = ('{% translate "Series" %} {% trans \'Study\' context "dicom" %}'
            '{% blocktranslate trimmed with n=count %}\n  {{ n }} series\n  of 50%\n{% endblocktranslate %}')

    assert template_msgids(text) == [(None, "Series"), ("dicom", "Study"), (None, "%(n)s series of 50%%")]


def test_template_strings_have_a_chinese_translation(catalogue):
    folders = [ROOT / "templates"] + [ROOT / app / "templates" for app in APPS]
    missing = set()
    count = 0
    for folder in folders:
        for path in sorted(folder.rglob("*.html")) + sorted(folder.rglob("*.txt")):
            for key in template_msgids(path.read_text(encoding="utf-8")):
                count += 1
                if not catalogue.get(key):
                    missing.add(f"{path.relative_to(ROOT)}: {key[1]!r}")

    assert count > 100
    assert sorted(missing) == []


# ---------------------------------------------------------------- (c) the front end's scripts

JS_SOURCES = ROOT / "frontend" / "src"
JS_CATALOGUE = ROOT / "locale/zh_Hans/LC_MESSAGES/djangojs.po"
# The wrappers of frontend/src/lib/i18n.js, as xgettext keywords (msgctxt first for pgettext).
XGETTEXT_KEYWORDS = ["gettext", "ngettext:1,2", "pgettext:1c,2", "npgettext:1c,2,3"]
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# A gettext-family call whose first argument is not a string literal: xgettext cannot see its msgid.
_COMPUTED_CALL = re.compile(r"(?<![\w.$])(?:n|p|np)?gettext\(\s*(?![\"'\s])")


def js_sources() -> list[Path]:
    return sorted(JS_SOURCES.rglob("*.js"))


def js_msgids(paths: list[Path]) -> list[tuple[str | None, str]]:
    """Return the (msgctxt, msgid) pairs of the scripts' gettext-family calls, extracted by xgettext.

    The plural form of an ``ngettext`` call is left out: Chinese has one form, msgstr[0].
    """
    xgettext = shutil.which("xgettext")
    if xgettext is None:
        pytest.skip("xgettext is not installed (Debian package gettext, in scripts/setup.sh)")
    keywords = [f"--keyword={k}" for k in XGETTEXT_KEYWORDS]
    result = subprocess.run(
        [xgettext, "--language=JavaScript", "--from-code=UTF-8", "--keyword", *keywords,
         "--output=-", *map(str, paths)],
        capture_output=True, text=True, encoding="utf-8", check=True)
    with tempfile.TemporaryDirectory() as folder:
        pot = Path(folder) / "djangojs.pot"
        pot.write_text(result.stdout, encoding="utf-8")
        return sorted((key for key in po_read(pot) if key != (None, "")), key=lambda key: (key[0] or "", key[1]))


def js_code_without_comments(text: str) -> str:
    """Return ``text`` with its ``//`` and ``/* */`` comments blanked out, strings and regexes kept.

    A small scanner, enough for the portal's sources: it follows quoted strings, template literals
    (with ``${...}`` nesting) and regex literals (a ``/`` where an operand may start).
    """
    out: list[str] = []
    i, n = 0, len(text)
    stack: list[int] = []  # brace depth at each open ${ of a template literal
    depth = 0
    last = ""  # the last significant character outside strings and comments
    in_template = False
    while i < n:
        c = text[i]
        if in_template:
            if c == "\\":
                out.append(text[i:i + 2])
                i += 2
            elif c == "`":
                out.append(c)
                i += 1
                in_template = False
                last = "`"
            elif text.startswith("${", i):
                out.append("${")
                i += 2
                stack.append(depth)
                depth += 1
                in_template = False
                last = "{"
            else:
                out.append(c)
                i += 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
            last = c
        elif c == "`":
            out.append(c)
            i += 1
            in_template = True
        elif c == "/" and (last == "" or last in "(,=:[!&|?{};+-*%<>~^" or re.search(r"\breturn\s*$", "".join(out[-3:]))):
            j = i + 1
            in_class = False
            while j < n and text[j] != "\n" and (text[j] != "/" or in_class):
                if text[j] == "\\":
                    j += 1
                elif text[j] == "[":
                    in_class = True
                elif text[j] == "]":
                    in_class = False
                j += 1
            out.append(text[i:j + 1])
            i = j + 1
            last = "/"
        else:
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if stack and depth == stack[-1]:
                    stack.pop()
                    out.append(c)
                    i += 1
                    in_template = True
                    continue
            out.append(c)
            i += 1
            if not c.isspace():
                last = c
    return "".join(out)


@pytest.fixture(scope="module")
def js_catalogue():
    return po_read(JS_CATALOGUE)


def test_js_scanner_drops_comments_and_keeps_strings_templates_and_regexes():
    text = ('const a = "http://x"; // 注释\n/* 块\n注释 */ const r = /[,，]+\\/\\//g; const t = `a ${ {b: "中"}.b } //c`;\n'
            "return /x/.test(y) ? '否' : 1; // 尾\n")

    code = js_code_without_comments(text)

    assert '"http://x"' in code and "注释" not in code and "尾" not in code
    assert "/[,，]+\\/\\//g" in code and '"中"' in code and "//c`" in code and "'否'" in code
    assert code.count("\n") == text.count("\n")


def test_js_msgids_are_extracted_from_every_gettext_family_call(tmp_path):
    script = tmp_path / "a.js"
    script.write_text('gettext("One");\ninterpolate(ngettext("%(n)s file", "%(n)s files", n), { n });\n'
                      'pgettext("finding status", "Rejected"); // gettext("In a comment")\n', encoding="utf-8")

    assert js_msgids([script]) == [(None, "%(n)s file"), (None, "One"), ("finding status", "Rejected")]


def test_js_strings_have_a_chinese_translation(js_catalogue):
    msgids = js_msgids(js_sources())

    assert len(msgids) > 100  # the extraction finds the calls (about 160 when this was written)
    missing = sorted(f"{context + ' | ' if context else ''}{msgid!r}" for context, msgid in msgids
                     if not js_catalogue.get((context, msgid)))
    assert missing == [], "add these to locale/zh_Hans/LC_MESSAGES/djangojs.po"


def test_js_gettext_calls_take_string_literals():
    computed = [f"{path.relative_to(ROOT)}:{js_code_without_comments(path.read_text(encoding='utf-8'))[:m.start()].count(chr(10)) + 1}"
                for path in js_sources() if path.name != "i18n.js"
                for m in _COMPUTED_CALL.finditer(js_code_without_comments(path.read_text(encoding="utf-8")))]

    assert computed == []


def test_js_sources_hold_no_chinese_outside_comments():
    found = []
    for path in js_sources():
        code = js_code_without_comments(path.read_text(encoding="utf-8"))
        for number, line in enumerate(code.splitlines(), start=1):
            if _HAN.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")

    assert found == [], "write the English msgid in gettext(...) and its Chinese in djangojs.po"


def test_the_js_catalogue_has_no_fuzzy_or_empty_entry():
    text = JS_CATALOGUE.read_text(encoding="utf-8")
    entries = po_read(JS_CATALOGUE)

    assert "#, fuzzy" not in text
    assert [key for key, msgstr in entries.items() if key != (None, "") and not msgstr] == []
