"""ONNX export and onnxruntime inference.

The only package that imports onnx and onnxruntime; everything else reaches it lazily
(`netspec.api.export`, `netspec.api.predict`, the `export` and `predict` commands), so
`netspec check` never pays for loading them.
"""
