"""Built-in image classifiers: ResNet-18 and DenseNet-161 in plain PyTorch, their weights,
ImageNet labels, and the TorchServe image-classifier pre- and post-processing.

Kept free of imports: torch is an optional extra (``nuvem[models]``), so the platform must be
able to import this package without it. Import the submodules you need.
"""
