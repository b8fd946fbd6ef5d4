"""Stable Diffusion 2.1 model server for eks-neuron: Neuron (torch-neuronx), CUDA and CPU backends."""

__version__ = "0.3.0"
