"""Deployment: export (ONNX), BN folding and benchmarks of the zoo's models."""
