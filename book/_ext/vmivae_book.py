"""Sphinx extension of the book (loaded through ``sphinx: local_extensions`` in ``_config.yml``).

The executed notebooks are built from ``<build>/book/executed/``, but in the repository they are the
paired notebooks in ``notebooks/``. sphinx-book-theme builds the Binder, JupyterHub and Colab launch
links from the page's path in the book (``<path_to_book>/executed/01_vae.ipynb``); this extension points
them at the repository's notebook instead (``notebooks/01_vae.ipynb``). Without a repository URL the
theme adds no launch buttons and there is nothing to rewrite.

It also marks the package's source and docstrings for wrapping (see ``_static/vmivae.css``).
"""

from __future__ import annotations

from docutils import nodes

EXECUTED = "executed"


def _point_launch_links_at_the_notebooks(app, pagename, templatename, context, doctree):
    folder = app.config.vmivae_executed_dir.strip("/")
    if not pagename.startswith(folder + "/"):
        return
    book = app.config.html_theme_options.get("path_to_docs", "").strip("/")
    built = f"{book}/{folder}/" if book else f"{folder}/"
    repository = app.config.vmivae_notebooks_dir.strip("/") + "/"
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if "url" in button:
                button["url"] = button["url"].replace(built, repository, 1)


def _wrap_package_text(app, doctree):
    """Code from the package keeps its 160-column lines: literalinclude blocks of its source (``/_src/...``),
    wherever they are (a page or a notebook cell), and the literal blocks of its docstrings (the API page) get
    the ``wrap-code`` class, which ``_static/vmivae.css`` wraps. Notebook code cells are not marked: they are
    written to fit the column."""
    for node in doctree.findall(nodes.literal_block):
        source = str(node.get("source") or node.source or "").replace("\\", "/")
        if "/_src/" in source or "docstring of " in source:
            node["classes"].append("wrap-code")


def setup(app):
    app.add_config_value("vmivae_executed_dir", EXECUTED, "html")
    app.add_config_value("vmivae_notebooks_dir", "notebooks", "html")
    # after sphinx-book-theme's add_launch_buttons (priority 501)
    app.connect("html-page-context", _point_launch_links_at_the_notebooks, priority=900)
    app.connect("doctree-read", _wrap_package_text)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
