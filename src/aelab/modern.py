"""Modern autoencoders for the results table (mlp, convnet); registered on import."""
