"""What aelab does with trained runs, one module each: explore (latent-space figures),
anomaly (detection by reconstruction error), results (the results table and its report),
export (ONNX), bench (training throughput), serve/ (the browser explorer and JSON API).
They take plain arguments; the `aelab` command's flags live in aelab.cli."""
