"""`netspec lsp`: the language server for editors (diagnostics, shapes inline, hover, ...).

The analysis of a document (analysis.py) and the features computed from it (facts.py: the
inlay hints; hover.py; complete.py with schema.py; locate.py and symbols.py: definitions and
the outline) are plain functions over netspec's own types, tested without an editor;
server.py and session.py are the only modules that import pygls and lsprotocol (the `lsp`
extra).
"""
