"""The stream-block DiT, its Gaussian diffusion and the named presets."""
