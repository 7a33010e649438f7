"""Show the package's own code in a chapter: a code cell renders it, in JupyterLab and in the book alike::

    from vmivae.teaching.show import show_code
    show_code(vmivae.objectives.reconstruction_loss)

displays the function's source, highlighted as Python. A chapter shows the package this way instead of a
``literalinclude`` directive, which only the book renders: in JupyterLab it would stay raw directive text.

The highlighting carries its own small stylesheet: the colours of the token classes that this listing
uses, scoped to the listing (``.vmivae-code``), without Pygments' comments. (IPython's ``Code`` embeds
Pygments' whole stylesheet on every call, unscoped rules and comments such as ``Generic.Traceback``
included, and a page's text then reads them.)
"""

from __future__ import annotations

import inspect
import re
import textwrap

SCOPE = "vmivae-code"  # the class of the listing's outer div; every style rule is scoped to it


def source_of(*objects) -> str:
    """The source of functions, classes or methods, dedented, separated by a blank line."""
    if not objects:
        raise ValueError("show_code needs at least one function, class or method to show")
    return "\n\n".join(textwrap.dedent(inspect.getsource(obj)).rstrip() for obj in objects) + "\n"


def highlighted_html(source: str) -> str:
    """``source`` highlighted as Python: a scoped stylesheet for the token classes it uses, then the listing.

    The listing wraps instead of widening the page or hiding behind a scroll bar (the book wraps its other
    listings of the package alike).
    """
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    formatter = HtmlFormatter()
    listing = highlight(source, PythonLexer(), formatter)
    listing = listing.replace("<pre>", '<pre style="white-space: pre-wrap; overflow-wrap: anywhere; line-height: 125%">', 1)
    used = set(re.findall(r'<span class="([\w-]+)">', listing))
    rules = []
    for line in formatter.get_style_defs(f".{SCOPE}").splitlines():
        match = re.fullmatch(rf"\.{SCOPE} \.([\w-]+) (\{{[^}}]*\}})(?: /\*.*\*/)?", line.strip())
        if match and match.group(1) in used:
            rules.append(f".{SCOPE} .{match.group(1)} {match.group(2)}")
    style = f"<style>{' '.join(rules)}</style>" if rules else ""
    return f'{style}<div class="{SCOPE}">{listing}</div>'


class SourceCode:
    """Python source that a notebook shows highlighted (HTML) or as plain text (any other front end)."""

    def __init__(self, data: str):
        self.data = data

    def _repr_html_(self) -> str:
        return highlighted_html(self.data)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(self.data)

    def __repr__(self) -> str:
        return self.data


def show_code(*objects) -> SourceCode:
    """``objects``' source as one highlighted Python block (returned, so a cell's last line shows it)."""
    return SourceCode(source_of(*objects))
