"""ONNX export of a weighted run (stage-1 model and weight policy) and the torch-free path
that serves it.

- manifest: the export's files and manifest.json, read and checked (no torch);
- graphs: the export itself, from PyTorch (torch.onnx, TorchScript exporter);
- runtime: the graphs in onnxruntime and `deepprl recommend` from them (no torch).

Nothing is imported here, so `import deepprl.export.runtime` stays free of torch.
"""
