"""Governed generation: signed dataset manifests, the reference generator, output checks."""
