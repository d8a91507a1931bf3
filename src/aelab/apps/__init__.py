"""What aelab does with trained runs, one module each: explore (latent-space figures),
anomaly (detection by reconstruction error and RaPP), denoise (the Wiener-filter baseline),
likelihood (exact Bernoulli-mixture baselines for binarized MNIST), results (the
reconstruction table and RESULTS.md), tasks (the vae, anomaly and denoise groups of
`aelab results`), export (ONNX), bench (training throughput), serve/ (the browser explorer
and JSON API). They take plain arguments; the `aelab` command's flags live in aelab.cli."""
