"""What aelab does with trained runs, one module each: explore (latent-space figures),
anomaly (detection by reconstruction error and RaPP), denoise (the Wiener-filter baseline),
likelihood (exact Bernoulli-mixture baselines for binarized MNIST), export (ONNX), bench
(training throughput), serve/ (the browser explorer and JSON API). The groups of
`aelab results` that use them live one layer up, in aelab.results. They take plain
arguments; the `aelab` command's flags live in aelab.cli."""
