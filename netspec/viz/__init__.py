"""Pictures: network diagrams (SVG, DOT, HTML, PNG) and training curves.

The layout is layout.py's own (nothing here imports networkx), and matplotlib
(the optional `plot` extra) is imported only by the functions that draw with it.
"""
