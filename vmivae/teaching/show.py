"""Show the package's own code in a chapter: a code cell renders it, in JupyterLab and in the book alike::

    from vmivae.teaching.show import show_code
    show_code(vmivae.objectives.reconstruction_loss)

displays the function's source, highlighted as Python (``IPython.display.Code``). A chapter shows the
package this way instead of a ``literalinclude`` directive, which only the book renders: in JupyterLab it
would stay raw directive text.
"""

from __future__ import annotations

import inspect
import textwrap


def source_of(*objects) -> str:
    """The source of functions, classes or methods, dedented, separated by a blank line."""
    if not objects:
        raise ValueError("show_code needs at least one function, class or method to show")
    return "\n\n".join(textwrap.dedent(inspect.getsource(obj)).rstrip() for obj in objects) + "\n"


def show_code(*objects):
    """Display ``objects``' source as one highlighted Python block (returned, so a cell's last line shows it).

    The package's lines are longer than the book's column: they wrap, in JupyterLab as in the book, instead
    of widening the page or hiding behind a scroll bar (the book wraps its other listings of the package alike).
    """
    from IPython.display import Code  # a notebook dependency, not a library one

    class SourceCode(Code):
        def _repr_html_(self) -> str:
            return super()._repr_html_().replace("<pre>", '<pre style="white-space: pre-wrap; overflow-wrap: anywhere">', 1)

    return SourceCode(source_of(*objects), language="python")
