"""Pictures: network diagrams (SVG, DOT, HTML, PNG) and training curves.

The layout comes from `netspec.graph.layout`; nothing here imports networkx, and matplotlib
(the optional `plot` extra) is imported only by the functions that draw with it.
"""
