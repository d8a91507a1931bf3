"""Variational autoencoder; registered on import."""
