"""Conditional video models over codec tokens: VQ-Diffusion (ours) and VideoGPT (for VIPER)."""
