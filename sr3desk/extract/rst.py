"""reStructuredText through docutils, Sphinx sources included.

docutils alone does not know Sphinx's directives (``function``, ``versionadded``,
``code-block``, ...) or roles (``:func:``, ``:ref:``, ...). Before parsing, the names a
file uses are found with a regex and any unknown one is registered as a generic
directive or role that keeps its text: a directive's argument (a signature, say) becomes
a paragraph and its body is parsed as reST; a role shows its title. The reporter is
silenced and file inclusion and raw input are off. If docutils fails anyway, the source
is kept as plain text with its underlined section titles as headings.
"""

from __future__ import annotations

import re
from typing import Any

from sr3desk.extract.base import TextBuilder, one_line
from sr3desk.extract.text import decode_into

_DIRECTIVE_USE = re.compile(r"^[ \t]*\.\.[ \t]+([A-Za-z0-9_][\w:.+-]*)::", re.MULTILINE)
_ROLE_USE = re.compile(r":([A-Za-z][\w.+-]*(?::[A-Za-z][\w.+-]*)*):`")
_TITLE_TARGET = re.compile(r"^(.*?)\s*<([^<>]*)>$", re.DOTALL)
# Directives whose body is code or grammar, kept verbatim.
_LITERAL = frozenset(
    [
        "code-block",
        "sourcecode",
        "highlight",
        "doctest",
        "testcode",
        "testoutput",
        "productionlist",
        "literalinclude",
    ]
)
# Directives that carry no readable text (index entries, build settings).
_SILENT = frozenset(
    [
        "index",
        "toctree",
        "highlight",
        "currentmodule",
        "default-role",
        "default-domain",
        "tabularcolumns",
        "sectionauthor",
        "moduleauthor",
        "codeauthor",
        "testsetup",
        "testcleanup",
        "literalinclude",
        "autosummary",
    ]
)
# Sphinx object descriptions: their signature becomes a heading.
_OBJECTS = frozenset(
    (
        "function",
        "class",
        "method",
        "attribute",
        "data",
        "exception",
        "decorator",
        "decoratormethod",
        "classmethod",
        "staticmethod",
        "coroutinefunction",
        "coroutinemethod",
        "abstractmethod",
        "property",
        "type",
        "macro",
        "member",
        "var",
        "struct",
        "union",
        "enum",
        "enumerator",
        "opcode",
        "cmdoption",
        "option",
        "envvar",
        "describe",
        "object",
        "pdbcommand",
        "2to3fixer",
    )
)
# Directives that take ":option:" lines in Sphinx; for the others such lines are text.
_WITH_OPTIONS = _OBJECTS | _LITERAL | _SILENT | {"module", "program", "image", "figure"}
_VERSION = {
    "versionadded": "Added in version",
    "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version",
    "deprecated-removed": "Deprecated since version",
}
_UNDERLINE = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")

_state: dict[str, Any] = {}  # parser, settings and registered names, built once


def _setup() -> dict[str, Any]:
    if _state:
        return _state
    from docutils import nodes
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser, directives, roles
    from docutils.parsers.rst.languages import en

    generic, kinds, api_entry = _directive_classes()

    def generic_role(
        name: str,
        rawtext: str,
        text: str,
        lineno: int,
        inliner: Any,
        options: Any = None,
        content: Any = None,
    ) -> tuple[list[Any], list[Any]]:
        return [nodes.literal(rawtext, _role_title(text))], []

    settings = get_default_settings(Parser)
    settings.report_level = 5  # nothing: Sphinx sources would report on every line
    settings.halt_level = 5
    settings.warning_stream = False
    settings.file_insertion_enabled = False  # no ".. include:: /etc/passwd"
    settings.raw_enabled = False
    settings.syntax_highlight = "none"
    settings.line_length_limit = 1_000_000
    _state.update(
        parser=Parser(),
        settings=settings,
        directives=set(en.directives),
        roles=set(en.roles) | {""},
        register_directive=lambda n: directives.register_directive(
            n, kinds.get(n.rsplit(":", 1)[-1], generic)
        ),
        register_role=lambda n: roles.register_local_role(n, generic_role),
        nodes=nodes,
        api_entry=api_entry,
    )
    return _state


def _role_title(text: str) -> str:
    """What an unknown role shows: its title, or the last part of a ``~`` target.

    >>> _role_title("the docs <docs-index>"), _role_title("~os.path.join")
    ('the docs', 'join')
    """
    shown = text.replace("\x00", "")
    match = _TITLE_TARGET.match(shown)
    if match and match.group(1):
        shown = match.group(1)
    elif shown.startswith("~"):
        shown = shown[1:].rsplit(".", 1)[-1]
    return shown.lstrip("!")


def _directive_classes() -> tuple[type[Any], dict[str, type[Any]], type[Any]]:
    """The generic directive, the directives that differ from it by name, and the
    node of a Sphinx API entry (docutils is imported here, on first use)."""
    from docutils import nodes
    from docutils.parsers.rst import Directive, directives

    class AnyOptions(dict[str, Any]):
        def __missing__(self, key: str) -> Any:
            return directives.unchanged

        def __bool__(self) -> bool:  # docutils parses options only if the spec is truthy
            return True

    class ApiEntry(nodes.Element):
        """A Sphinx object description (function, class, ...); walked like a section."""

    class Generic(Directive):
        required_arguments = 0
        optional_arguments = 1
        final_argument_whitespace = True
        option_spec: Any = None  # body lines like ":func:`x`" are text, not options
        has_content = True

        def run(self) -> list[Any]:
            name = self.name.rsplit(":", 1)[-1]
            if name in _SILENT:
                return []
            result: list[Any] = []
            argument = self.arguments[0] if self.arguments else ""
            if name in _OBJECTS and argument.strip():
                # An API entry: its signature heads its description, like a section.
                box = ApiEntry(signature=one_line(argument.strip().split("\n", 1)[0]))
                result.append(box)
            else:
                box = nodes.container()
                result.append(box)
                if name in _VERSION:
                    version, *rest = argument.split(None, 1) or [""]
                    words, _ = self.state.inline_text(" ".join(rest), self.lineno)
                    box += nodes.paragraph("", f"{_VERSION[name]} {version}. ", *words)
                elif argument:
                    words, _ = self.state.inline_text(argument, self.lineno)
                    box += nodes.paragraph("", "", *words)
            if name in _LITERAL and self.content:
                box += nodes.literal_block(text="\n".join(self.content))
            elif self.content:
                self.state.nested_parse(self.content, self.content_offset, box)
            return result

    class WithOptions(Generic):
        option_spec = AnyOptions()

    class NoArguments(Generic):
        optional_arguments = 0  # text right after "::" is body, as in Sphinx

    kinds: dict[str, type[Any]] = {name: WithOptions for name in _WITH_OPTIONS} | {
        name: NoArguments for name in ("seealso", "glossary", "hlist")
    }
    return Generic, kinds, ApiEntry


def _register_names(text: str, state: dict[str, Any]) -> None:
    known_directives: set[str] = state["directives"]
    for name in set(_DIRECTIVE_USE.findall(text)) - known_directives:
        state["register_directive"](name)
        known_directives.add(name)
    known_roles: set[str] = state["roles"]
    for name in set(_ROLE_USE.findall(text)) - known_roles:
        state["register_role"](name)
        known_roles.add(name)


def _parse(text: str) -> Any:
    from docutils.utils import new_document

    state = _setup()
    _register_names(text, state)
    document = new_document("<rst>", state["settings"])
    state["parser"].parse(text, document)
    return document


def _emit(document: Any, out: TextBuilder) -> None:
    """Walk the doctree: sections become headings, text elements become blocks."""
    nodes = _state["nodes"]
    api_entry = _state["api_entry"]
    skip = (
        nodes.system_message,
        nodes.comment,
        nodes.substitution_definition,
        nodes.target,
        nodes.pending,
        nodes.raw,
    )
    # (node, section depth) pairs; an explicit stack because nesting can be deep.
    work: list[tuple[Any, int]] = [(child, 0) for child in reversed(document.children)]
    while work:
        if out.should_stop():
            return
        node, depth = work.pop()
        if isinstance(node, skip):
            continue
        if isinstance(node, api_entry):
            out.heading(node["signature"], depth + 1)
            work.extend((child, depth + 1) for child in reversed(node.children))
        elif isinstance(node, nodes.section):
            children = list(node.children)
            if children and isinstance(children[0], nodes.title):
                out.heading(children[0].astext(), depth + 1)
                children = children[1:]
            work.extend((child, depth + 1) for child in reversed(children))
        elif isinstance(node, (nodes.literal_block, nodes.doctest_block, nodes.line_block)):
            out.block(node.astext())
        elif isinstance(node, nodes.row):
            out.block(" | ".join(one_line(entry.astext()) for entry in node.children))
        elif isinstance(node, nodes.TextElement):
            out.block(one_line(node.astext()))
        else:
            work.extend((child, depth) for child in reversed(node.children))


def _plain(text: str, out: TextBuilder) -> None:
    """The source as one block, with underlined (and overlined) titles as headings."""
    start = out.block(text, cleaned=True)
    if start < 0:
        return
    body = text.strip("\n")
    styles: list[tuple[str, bool]] = []  # title styles in order of first use = levels
    lines = body.split("\n")
    offset = 0
    offsets = []
    for line in lines:
        offsets.append(offset)
        offset += len(line) + 1
    for i in range(1, len(lines)):
        under = _UNDERLINE.match(lines[i])
        title = lines[i - 1].strip()
        if not under or not title or _UNDERLINE.match(lines[i - 1]):
            continue
        over = i >= 2 and lines[i - 2].strip() == lines[i].strip()
        style = (under.group(1), over)
        if style not in styles:
            styles.append(style)
        out.mark_heading(start + offsets[i - 1], styles.index(style) + 1, title)


def extract_rst(data: bytes, out: TextBuilder) -> None:
    """A reST file: docutils doctree to text; plain text with titles if parsing fails."""
    text = decode_into(data, out)
    try:
        document = _parse(text)
    except Exception as err:  # docutils fails in many ways on odd input; keep the text
        out.warn(f"reST not parsed ({type(err).__name__}): kept as plain text")
        _plain(text, out)
        return
    _emit(document, out)
