"""`netspec lsp`: the language server for editors (diagnostics, shapes inline, hover, ...).

The analysis of a document (analysis.py) and the features computed from it (hints, hover,
complete, navigate) are plain functions over netspec's own types, tested without an editor;
server.py is the only module that imports pygls and lsprotocol (the `lsp` extra).
"""
