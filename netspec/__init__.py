"""netspec: a declarative neural-network compiler."""

__version__ = "0.1.0"
